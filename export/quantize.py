"""int8: weights stored as int8 with one scale per output channel, computed in fp32.

The scheme is chosen for "the same names on every device" (docs/int8.md has the
measurements): each Gemm or MatMul weight becomes int8 values and a scale, turned
back into fp32 by a Cast and a Mul that onnxruntime folds into a constant when the
session starts, so that everything after is the fp32 arithmetic of the fp32 file.
(A DequantizeLinear node is not folded: onnxruntime keeps it for its QDQ fusions
and runs it at every call, and the Gemm then takes a path that depends on the batch.) There
are no integer kernels, whose results differ between CPUs (onnxruntime's u8s8
kernels saturate on AVX2 without VNNI), and no activation scale shared by the
rows of a batch, which made a row's distribution depend on its neighbours. The
file is about a quarter of the fp32 size; it runs at fp32 speed.

Drift is measured where it matters for sampling, on every validation context:
the mean KL divergence of the int8 next-char distributions from the fp32 ones,
and the change of validation loss (nats/char).
"""

from __future__ import annotations

import numpy as np

from nametool.runtime.errors import NametoolError
from nametool.runtime.sampling import log_softmax
from nametool.runtime.windows import pick_targets
from nametool.runtime.schema import Quantization

SCHEME = "int8-weights"  # per-output-channel symmetric int8 weights, fp32 compute
MAX_MEAN_KL = 0.01  # nats: far below the 0.4 nats/char the model gains over a bigram model
MAX_VAL_LOSS_INCREASE = 0.01  # nats/char
INT8_MAX = 127  # symmetric: -127..127, so that -w quantizes to -q


class QuantizationDrift(NametoolError):
    """The int8 model strays too far from the fp32 one; nothing is written."""


def quantize_weights(weights: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, float32 scale per index of ``axis``) with ``q * scale`` closest to ``weights``."""
    other = tuple(i for i in range(weights.ndim) if i != axis)
    peak = np.abs(weights).max(axis=other)  # (channels,)
    scale = np.where(peak > 0, peak / INT8_MAX, 1.0).astype(np.float32)
    shape = [1] * weights.ndim
    shape[axis] = -1
    q = np.clip(np.rint(weights / scale.reshape(shape)), -INT8_MAX, INT8_MAX).astype(np.int8)
    return q, scale


def quantize_int8(proto):
    """A copy of the fp32 ModelProto whose Gemm and MatMul weights are int8 with per-channel scales."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    dequantize, replaced = [], set()
    for node in graph.node:
        if node.op_type not in ("Gemm", "MatMul") or len(node.input) < 2:
            continue
        name = node.input[1]
        tensor = weights.get(name)
        if tensor is None or tensor.data_type != onnx.TensorProto.FLOAT or len(tensor.dims) != 2:
            continue
        trans_b = any(a.name == "transB" and a.i for a in node.attribute)
        axis = 0 if node.op_type == "Gemm" and trans_b else 1  # the output channel of this weight
        if name not in replaced:
            q, scale = quantize_weights(numpy_helper.to_array(tensor), axis)
            scale = scale.reshape((-1, 1) if axis == 0 else (-1,))  # broadcasts along the channel axis
            graph.initializer.extend([numpy_helper.from_array(q, f"{name}_int8"),
                                      numpy_helper.from_array(scale, f"{name}_scale")])
            dequantize += [
                helper.make_node("Cast", [f"{name}_int8"], [f"{name}_int8_as_float"], name=f"{name}_cast",
                                 to=onnx.TensorProto.FLOAT),
                helper.make_node("Mul", [f"{name}_int8_as_float", f"{name}_scale"], [name], name=f"{name}_scale"),
            ]
            replaced.add(name)
    kept = [t for t in graph.initializer if t.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = [*dequantize, *graph.node]  # weights first: the graph stays in topological order
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def measure_drift(fp32_logits, int8_logits, contexts: np.ndarray, targets: np.ndarray, *, scheme: str = SCHEME,
                  max_mean_kl: float | None = None, max_val_loss_increase: float | None = None) -> Quantization:
    """Compare two logits functions on validation windows; raise if outside the bounds (int8's unless given)."""
    max_mean_kl = MAX_MEAN_KL if max_mean_kl is None else max_mean_kl
    max_val_loss_increase = MAX_VAL_LOSS_INCREASE if max_val_loss_increase is None else max_val_loss_increase
    logp32 = log_softmax(fp32_logits(contexts))  # (windows, vocab)
    logp8 = log_softmax(int8_logits(contexts))
    mean_kl = float((np.exp(logp32) * (logp32 - logp8)).sum(axis=1).mean())
    loss32, loss8 = (float(-pick_targets(logp, targets).mean()) for logp in (logp32, logp8))
    drift = Quantization(scheme, mean_kl, loss32, loss8, max_mean_kl, max_val_loss_increase)
    if mean_kl > max_mean_kl or loss8 - loss32 > max_val_loss_increase:
        what = "int8" if scheme == SCHEME else f"the {scheme} form"
        raise QuantizationDrift(
            f"{what} drifts too far from fp32: mean KL {mean_kl:.4f} nats (limit {max_mean_kl}), "
            f"val loss {loss32:.4f} -> {loss8:.4f} (limit +{max_val_loss_increase}); nothing written"
        )
    return drift
