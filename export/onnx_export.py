"""Checkpoint -> one self-contained ``.onnx`` file with the schema in its metadata.

An fp32 export is accepted only after onnxruntime, reading the written file,
gives PyTorch's next-char distributions on every validation context; an int8
export only within the drift bounds of ``quantize``. Either way the file gets a
built-in self-test (golden distributions) that ``nametool-run verify`` replays.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from nametool.export import MIN_OPSET
from nametool.runtime.atomic import atomic_path
from nametool.export.fold import fold_first_layer
from nametool.export.quantize import measure_drift, quantize_int8
from nametool.export.sealing import (ExportMismatch, ExportReport, golden_contexts, seal, session_model,
                                     set_metadata, validation_contexts)
from nametool.runtime.errors import NametoolError
from nametool.runtime.verify import verify
from nametool.runtime.model import NameModel, encode_contexts
from nametool.runtime.sampling import next_char_probs
from nametool.runtime.schema import FORMS, INPUT_NAME, OUTPUT_NAME, Golden, GraphForm, ModelMeta
from nametool.train.checkpoint import Checkpoint
from nametool.runtime.windows import build_windows
from nametool.train.evaluate import split_loss
from nametool.train.reference import torch_logits_fn

PARITY_TOLERANCE = 1e-5  # max |p_onnxruntime - p_torch| over every validation context
# max |dp| verify allows between devices and engines: fp32 and int8 files both compute in fp32;
# measured differences are below 1e-6 (docs/int8.md, docs/devices.md)
GOLDEN_TOLERANCE = 1e-5


def trace(ckpt: Checkpoint, opset: int = MIN_OPSET):
    """The model as an ONNX ModelProto: int64 (batch, context_size) -> float32 (batch, vocab)."""
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
    proto.producer_name = "nametool"
    return proto


def torch_probs(ckpt: Checkpoint, contexts: np.ndarray) -> np.ndarray:
    return next_char_probs(torch_logits_fn(ckpt)(contexts))


def parity(ckpt: Checkpoint, model: NameModel, contexts: np.ndarray, chunk: int = 8192) -> float:
    """Largest absolute difference of next-char probabilities, onnxruntime vs. PyTorch."""
    worst = 0.0
    for start in range(0, len(contexts), chunk):
        part = contexts[start:start + chunk]
        diff = np.abs(next_char_probs(model.logits(part)) - torch_probs(ckpt, part))
        worst = max(worst, float(diff.max()))
    return worst


def make_golden(model: NameModel, contexts: tuple[str, ...], tolerance: float) -> Golden:
    probs = next_char_probs(model.logits(encode_contexts(model.meta, contexts)))
    return Golden(contexts, tuple(tuple(round(float(p), 9) for p in row) for row in probs), tolerance)


def export_onnx(ckpt: Checkpoint, out: Path, *, form: str = "exact", opset: int = MIN_OPSET,
                quantize: str | None = None, fold: bool = True, force: bool = False) -> ExportReport:
    """Write ``out`` atomically, after proving it matches PyTorch: integer for integer (exact),
    within ``PARITY_TOLERANCE`` (float, fp32) or within drift bounds (float, int8).

    ``form``: ``exact`` (integers and tables: the same names on every device) or ``float``.
    ``fold`` (float form): the embedding folded into the first layer (``export/fold.py``); False
    keeps the lecture's form, for teaching and comparison. ``quantize`` (float form): ``int8``.
    """
    import onnx

    if opset < MIN_OPSET:
        raise NametoolError(f"opset {opset} is below the minimum {MIN_OPSET}")
    if form not in FORMS:
        raise NametoolError(f"form {form!r} is not one of {', '.join(FORMS)}")
    if form == "exact" and (quantize or not fold):
        raise NametoolError("--quantize and --no-fold apply to the float form: add --form float")
    meta = ckpt.meta.with_provenance(
        onnx_version=onnx.__version__,
        exported=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    if form == "exact":
        from nametool.export.exact_export import export_exact

        return export_exact(ckpt, meta, Path(out), opset=opset, force=force)
    fp32 = trace(ckpt, opset)
    if quantize == "int8":
        proto, meta, drift, checked = _int8(ckpt, fp32, meta)
    else:
        proto, drift, checked = fp32, None, 0
    if fold:
        proto = fold_first_layer(proto, len(meta.vocab), meta.model.context_size)
    meta = replace(meta, graph=GraphForm("folded" if fold else "plain"))
    contexts = golden_contexts(ckpt.splits["val"], meta.vocab.chars, meta.model.context_size)
    meta = seal(proto, replace(meta, golden=make_golden(session_model(proto, meta), contexts, GOLDEN_TOLERANCE)))
    set_metadata(fp32, meta)  # only to report the fp32 file size beside an int8 one
    with atomic_path(Path(out), force=force) as tmp:
        onnx.save_model(proto, tmp)
        model = NameModel.load(tmp)
        check = verify(model)
        if not check.ok:
            raise ExportMismatch(f"the written file fails its own self-test ({check.message}); nothing written")
        worst = None
        if quantize is None:
            worst, checked = _fp32_parity(ckpt, model)
        size = tmp.stat().st_size
    return ExportReport(Path(out), checked, worst, drift, size, fp32.ByteSize())


def _int8(ckpt: Checkpoint, fp32, meta: ModelMeta):
    """(int8 proto, meta with its own losses and drift, drift, windows checked); raises past the bounds."""
    proto = quantize_int8(fp32)
    contexts, targets = build_windows(ckpt.splits["val"], meta.vocab, meta.model.context_size)
    int8 = session_model(proto, meta)
    drift = measure_drift(session_model(fp32, meta).logits, int8.logits, contexts, targets)
    own = {f"{split}_loss": split_loss(int8.logits, meta, ckpt.splits[split]) for split in ("train", "test")}
    own["val_loss"] = drift.val_loss  # measured on these very windows just now
    return proto, replace(meta.with_provenance(**own), quantization=drift), drift, len(contexts)


def _fp32_parity(ckpt: Checkpoint, model: NameModel) -> tuple[float, int]:
    """The written file against PyTorch on every validation context; raises past the tolerance."""
    contexts = validation_contexts(ckpt)
    worst = parity(ckpt, model, contexts)
    if not worst <= PARITY_TOLERANCE:
        raise ExportMismatch(f"onnxruntime and PyTorch disagree by {worst:.2e} (> {PARITY_TOLERANCE:.0e}); "
                             "nothing written")
    return worst, len(contexts)
