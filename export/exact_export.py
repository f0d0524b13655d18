"""``nametool export --form exact``: quantise, build the integer graph, prove it, write it.

The file is written only after three computations of the same integers agree on every
validation context: PyTorch in int64 (``train/exact.py``), onnxruntime and the numpy
engine reading the written file. Its losses are its own (the integer model's logits as
real numbers), and its drift from the float model is bounded like int8's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from torch import nn

from nametool.export.exact import NotExactable, exact_arrays, exact_form, exact_graph
from nametool.export.sealing import (ExportMismatch, ExportReport, golden_contexts, seal, session_model,
                                     validation_contexts)
from nametool.export.quantize import measure_drift
from nametool.runtime.atomic import atomic_path
from nametool.runtime.exact import exact_probs
from nametool.runtime.model import NameModel, encode_contexts
from nametool.runtime.schema import Golden, GraphForm, ModelMeta
from nametool.runtime.verify import verify
from nametool.runtime.windows import build_windows
from nametool.train.checkpoint import Checkpoint
from nametool.train.evaluate import split_loss
from nametool.train.exact import exact_member_logits
from nametool.train.reference import torch_logits_fn

SCHEME = "exact"
MAX_MEAN_KL = 0.01  # nats, as for int8
MAX_VAL_LOSS_INCREASE = 0.005  # nats/char


def member_weights(model: nn.Module) -> tuple[list[dict], dict[str, np.ndarray]]:
    """(each member's embedding and Linear weights as float64 arrays, the embedding tables by their
    state-dict names, kept in the file for ``embeddings`` and the web page's map)."""
    members = list(model.members) if hasattr(model, "members") else [model]
    weights = []
    for member in members:
        linear = [(layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy())
                  for layer in member.mlp if isinstance(layer, nn.Linear)]
        weights.append({"embed": member.embed.weight.detach().double().numpy(), "linear": linear})
    tables = {name: value.detach().float().numpy() for name, value in model.state_dict().items()
              if name.endswith("embed.weight")}
    return weights, tables


def export_exact(ckpt: Checkpoint, meta: ModelMeta, out: Path, *, opset: int, force: bool) -> ExportReport:
    import onnx

    config = meta.model
    if config.norm != "none":
        raise NotExactable("the exact form has no layer norm: export this model with --form float")
    weights, tables = member_weights(ckpt.model)
    arrays, multipliers, half = exact_arrays(weights, config.context_size)
    meta = replace(meta, exact=exact_form(arrays, multipliers, meta), graph=GraphForm("folded"), golden=None,
                   quantization=None)
    proto = exact_graph(arrays, meta, half, tables, opset)
    contexts = validation_contexts(ckpt)
    expected = exact_member_logits(arrays, contexts, vocab_size=len(meta.vocab), members=config.members,
                                   layers=len(config.hidden))
    model = session_model(proto, meta)
    _same_integers(model, contexts, expected, "onnxruntime")
    windows, targets = build_windows(ckpt.splits["val"], meta.vocab, config.context_size)
    drift = measure_drift(torch_logits_fn(ckpt), model.logits, windows, targets, scheme=SCHEME,
                          max_mean_kl=MAX_MEAN_KL, max_val_loss_increase=MAX_VAL_LOSS_INCREASE)
    own = {f"{split}_loss": split_loss(model.logits, meta, ckpt.splits[split]) for split in ("train", "test")}
    own["val_loss"] = drift.val_loss
    golden = golden_contexts(ckpt.splits["val"], meta.vocab.chars, config.context_size)
    mass = exact_probs(model.integer_logits(encode_contexts(meta, golden)), *model._exact)
    meta = replace(meta.with_provenance(**own), quantization=drift,
                   golden=Golden(golden, tuple(tuple(int(v) for v in row) for row in mass), 0.0))
    meta = seal(proto, meta)
    with atomic_path(out, force=force) as tmp:
        onnx.save_model(proto, tmp)
        for engine in ("onnxruntime", "numpy"):
            written = NameModel.load(tmp, engine=engine)
            _same_integers(written, contexts, expected, f"the written file on {engine}")
            check = verify(written)
            if not check.ok:
                raise ExportMismatch(f"the written file fails its own self-test on {engine} ({check.message}); "
                                     "nothing written")
        size = tmp.stat().st_size
    return ExportReport(out, len(contexts), 0.0, drift, size, size)


def _same_integers(model: NameModel, contexts: np.ndarray, expected: np.ndarray, where: str) -> None:
    got = model.integer_logits(contexts)
    if not np.array_equal(got, expected):
        rows = int((got != expected).any(axis=(1, 2)).sum())
        raise ExportMismatch(f"{where} and PyTorch's integers differ on {rows} of {len(contexts)} validation "
                             "contexts; nothing written")
