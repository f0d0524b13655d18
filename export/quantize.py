"""int8: onnxruntime dynamic quantization of the weights, accepted only within drift bounds.

Drift is measured where it matters for sampling, on every validation context:
the mean KL divergence of the int8 next-char distributions from the fp32 ones,
and the change of validation loss (nats/char).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from pathlib import Path

import numpy as np

from nametool.runtime.errors import NametoolError
from nametool.runtime.sampling import log_softmax
from nametool.runtime.schema import Quantization

MAX_MEAN_KL = 0.01  # nats: far below the 0.4 nats/char the model gains over a bigram model
MAX_VAL_LOSS_INCREASE = 0.01  # nats/char


class QuantizationDrift(NametoolError):
    """The int8 model strays too far from the fp32 one; nothing is written."""


def quantize_int8(proto):
    """The fp32 ModelProto with its weights quantized to int8 (activations quantized on the fly)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save_model(proto, src)
        quiet = io.StringIO()
        logging.getLogger("onnxruntime").setLevel(logging.ERROR)
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        quantized = onnx.load_model(dst)
    keep = [p for p in quantized.metadata_props if not p.key.startswith("onnx.")]
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(keep)
    return quantized


def measure_drift(fp32_logits, int8_logits, contexts: np.ndarray, targets: np.ndarray) -> Quantization:
    """Compare two logits functions on validation windows; raise if outside the bounds."""
    logp32 = log_softmax(fp32_logits(contexts))  # (windows, vocab)
    logp8 = log_softmax(int8_logits(contexts))
    mean_kl = float((np.exp(logp32) * (logp32 - logp8)).sum(axis=1).mean())
    rows = np.arange(len(targets))
    loss32, loss8 = float(-logp32[rows, targets].mean()), float(-logp8[rows, targets].mean())
    drift = Quantization("int8-dynamic", mean_kl, loss32, loss8, MAX_MEAN_KL, MAX_VAL_LOSS_INCREASE)
    if mean_kl > MAX_MEAN_KL or loss8 - loss32 > MAX_VAL_LOSS_INCREASE:
        raise QuantizationDrift(
            f"int8 drifts too far from fp32: mean KL {mean_kl:.4f} nats (limit {MAX_MEAN_KL}), "
            f"val loss {loss32:.4f} -> {loss8:.4f} (limit +{MAX_VAL_LOSS_INCREASE}); nothing written"
        )
    return drift
