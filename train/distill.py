"""Distillation: a run that fits a teacher's next-character distributions as well as the data.

An ensemble of MLPs predicts better than any one of them (docs/sweep.md), but costs a
model call per member at generation. ``nametool train --teacher ENSEMBLE.pt --members 1``
trains one member on ``(1 - distill) * CE(data) + distill * CE(teacher's distribution)``:
the teacher's soft targets tell it, for every training window, how likely each other
character was too. The teacher's distributions over the training windows are computed once
(a (windows, vocab) float32 table) and looked up per batch.

The teacher must have been trained on the student's split: a teacher that saw the student's
validation or test names would carry them into the student and make its scores lie.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch.nn import functional as F

from nametool.runtime.errors import ModelFileError, RequestError
from nametool.runtime.schema import Vocab
from nametool.train.checkpoint import load_checkpoint

CHUNK = 65536  # windows per teacher forward pass


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def teacher_probs(path: str, sha256: str | None, vocab: Vocab, splits: dict[str, list[str]],
                  contexts: torch.Tensor) -> torch.Tensor:
    """The teacher's P(next id | context) for each training window, ``(windows, vocab)`` float32.

    ``sha256``: the teacher file the run started with (a resumed run must see the same one).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"teacher {path}: no such file (the run distils from it)")
    if sha256 is not None and file_sha256(path) != sha256:
        raise ModelFileError(f"teacher {path}: the file changed since the run started (SHA-256 differs)")
    teacher = load_checkpoint(path)
    if (teacher.meta.vocab.chars, teacher.meta.vocab.end_token) != (vocab.chars, vocab.end_token):
        raise RequestError(f"teacher {path}: its vocabulary ({teacher.meta.vocab.describe()}) is not the "
                           f"student's ({vocab.describe()})")
    if any(teacher.splits.get(split) != splits[split] for split in ("val", "test")):
        raise RequestError(f"teacher {path}: trained on another split (other data, length bounds or --seed); "
                           "it would pass the student's validation and test names into the student")
    model = teacher.model.to(contexts.device).eval()
    with torch.no_grad():
        return torch.cat([F.softmax(model(contexts[i:i + CHUNK]).float(), dim=-1)
                          for i in range(0, len(contexts), CHUNK)])


def distill_loss(logits: torch.Tensor, targets: torch.Tensor, soft: torch.Tensor, weight: float) -> torch.Tensor:
    """``(1 - weight) * CE(targets) + weight * CE(soft)``, both in nats per window, on float32 logits."""
    logprobs = F.log_softmax(logits, dim=-1)
    hard = F.nll_loss(logprobs, targets)
    return (1 - weight) * hard + weight * -(soft * logprobs).sum(dim=-1).mean()
