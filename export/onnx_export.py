"""Checkpoint -> one self-contained ``.onnx`` file with the schema in its metadata.

The export is accepted only after onnxruntime, reading the written file, gives
the same next-char distributions as PyTorch on every validation context.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nametool.export.atomic import atomic_path
from nametool.runtime.errors import NametoolError
from nametool.runtime.model import NameModel
from nametool.runtime.sampling import next_char_probs
from nametool.runtime.schema import INPUT_NAME, METADATA_KEY, OUTPUT_NAME
from nametool.train.checkpoint import Checkpoint
from nametool.train.data import build_windows

DEFAULT_OPSET = 18  # the lowest opset torch's current (dynamo) exporter writes
PARITY_TOLERANCE = 1e-5  # max |p_onnxruntime - p_torch| over every validation context


class ExportMismatch(NametoolError):
    """The written file does not reproduce PyTorch's distributions."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    contexts_checked: int
    max_abs_diff: float
    size_bytes: int


def to_onnx_proto(ckpt: Checkpoint, opset: int = DEFAULT_OPSET):
    """Trace the model into an ONNX ModelProto: int64 (batch, context_size) -> float32 (batch, vocab)."""
    example = torch.zeros((2, ckpt.meta.model.context_size), dtype=torch.int64)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            ckpt.model.eval(), (example,), None, dynamo=True, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},), external_data=False, verbose=False,
        )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, ckpt.meta.to_json()
    proto.producer_name = "nametool"
    return proto


def torch_probs(ckpt: Checkpoint, contexts: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logits = ckpt.model(torch.from_numpy(contexts)).numpy()
    return next_char_probs(logits)


def parity(ckpt: Checkpoint, model: NameModel, contexts: np.ndarray, chunk: int = 8192) -> float:
    """Largest absolute difference of next-char probabilities, onnxruntime vs. PyTorch."""
    worst = 0.0
    for start in range(0, len(contexts), chunk):
        part = contexts[start:start + chunk]
        diff = np.abs(next_char_probs(model.logits(part)) - torch_probs(ckpt, part))
        worst = max(worst, float(diff.max()))
    return worst


def validation_contexts(ckpt: Checkpoint) -> np.ndarray:
    contexts, _ = build_windows(ckpt.splits["val"], ckpt.meta.vocab, ckpt.meta.model.context_size)
    return np.unique(contexts, axis=0)


def export_onnx(ckpt: Checkpoint, out: Path, *, opset: int = DEFAULT_OPSET, force: bool = False) -> ExportReport:
    """Write ``out`` atomically, then prove it matches PyTorch before it takes the final name."""
    import onnx

    out = Path(out)
    proto = to_onnx_proto(ckpt, opset)
    with atomic_path(out, force=force) as tmp:
        onnx.save_model(proto, tmp)
        model = NameModel.load(tmp)
        contexts = validation_contexts(ckpt)
        worst = parity(ckpt, model, contexts)
        if not worst <= PARITY_TOLERANCE:
            raise ExportMismatch(
                f"onnxruntime and PyTorch disagree by {worst:.2e} (> {PARITY_TOLERANCE:.0e}); nothing written"
            )
        size = tmp.stat().st_size
    return ExportReport(out, len(contexts), worst, size)
