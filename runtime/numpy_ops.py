"""The operators the numpy engine runs (``numpy_engine.NumpyGraph``), with ONNX's semantics for
the attributes nametool's exports set: ``OPS`` by op type, ``AXES_OPS`` for those taking axes,
``FUSED_OPS`` for the steps the engine makes itself on load."""

from __future__ import annotations

import numpy as np

from nametool.runtime.errors import ModelFileError

ONNX_DOMAINS = ("", "ai.onnx")
CAST_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 11: np.float64}


def axes_of(node_inputs, attrs, values, index: int):
    """Axes given as an input (opset 13+ for Unsqueeze, 18+ for reductions) or an attribute."""
    if len(node_inputs) > index and node_inputs[index]:
        return tuple(int(a) for a in values[index].reshape(-1))
    axes = attrs.get("axes")
    return None if axes is None else tuple(int(a) for a in axes)


def _indices(indices: np.ndarray, size: int) -> np.ndarray:
    """Gather's indices, checked (ONNX allows -size..size-1) and as intp (int32 on 32-bit ARM)."""
    if indices.size and (indices.min() < -size or indices.max() >= size):
        raise ModelFileError(f"Gather index out of range for an axis of {size}")
    return indices.astype(np.intp, copy=False)


def _gather(attrs, data, indices):
    axis = attrs.get("axis", 0)
    return np.take(data, _indices(indices, data.shape[axis]), axis=axis)


def _reshape(attrs, data, shape):
    shape = [int(s) for s in shape]
    if not attrs.get("allowzero", 0):
        shape = [data.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return data.reshape(shape)


def matmul(a, b):
    """``a @ b`` for float32 operands, accumulated in float64 and rounded once to float32.

    BLAS picks its float32 kernels by the CPU and by the number of rows (OpenBLAS has
    other kernels for one row and for a few): accumulated in float32, a row's logits
    changed by up to 1.4e-5 with the rows beside it in the call. Accumulated in float64
    they differ by about 1e-16, which rounding to float32 hides unless a sum lies that
    close to a rounding boundary (about one logit in 10^8): a row's logits no longer
    depend on the call's size, nor in practice on the CPU. Integer operands stay as they are.
    """
    if a.dtype != np.float32 and b.dtype != np.float32:
        return a @ b
    return (a.astype(np.float64, copy=False) @ b.astype(np.float64, copy=False)).astype(np.float32)


def _gemm(attrs, a, b, c=None):
    a = a.T if attrs.get("transA", 0) else a
    b = b.T if attrs.get("transB", 0) else b
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if a.dtype != np.float32 and b.dtype != np.float32:
        out = a @ b
    else:  # as matmul, with the scaling and the bias added before the one rounding
        out = a.astype(np.float64, copy=False) @ b.astype(np.float64, copy=False)
        if alpha != 1.0:
            out *= alpha
        if c is not None:
            out += c if beta == 1.0 else c.astype(np.float64) * beta
        return out.astype(np.float32)
    if alpha != 1.0:
        out = out * alpha
    if c is not None:
        out = out + (c if beta == 1.0 else c * beta)
    return out


def _log_softmax(attrs, x):
    axis = attrs.get("axis", -1)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _softmax(attrs, x):
    axis = attrs.get("axis", -1)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _reduction_axes(attrs, axes, x):
    """The axes a Reduce* node reduces, or None for the no-op ``noop_with_empty_axes`` asks for."""
    if axes:
        return axes
    return None if attrs.get("noop_with_empty_axes", 0) else tuple(range(x.ndim))


def _reduce_log_sum_exp(attrs, axes, x):
    keep = bool(attrs.get("keepdims", 1))
    axes = _reduction_axes(attrs, axes, x)
    if axes is None:
        return x
    top = x.max(axis=axes, keepdims=True)
    out = np.log(np.exp(x - top).sum(axis=axes, keepdims=True)) + top
    return out if keep else out.squeeze(axis=axes)


def _layer_norm(attrs, x, scale, bias=None):
    axis = attrs.get("axis", -1) % x.ndim
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=axes, keepdims=True)
    out = centred / np.sqrt(var + np.float32(attrs.get("epsilon", 1e-5))) * scale
    return out if bias is None else out + bias


def _dequantize(attrs, x, scale, zero_point=None):
    zero = np.zeros(scale.shape, np.int32) if zero_point is None else zero_point.astype(np.int32)
    if scale.ndim == 1 and x.ndim > 1:  # per-axis: line the scales up with that axis
        shape = [1] * x.ndim
        shape[attrs.get("axis", 1)] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (x.astype(np.int32) - zero).astype(np.float32) * scale


def _reduce_sum(attrs, axes, x):
    axes = _reduction_axes(attrs, axes, x)
    return x if axes is None else x.sum(axis=axes, keepdims=bool(attrs.get("keepdims", 1)))


def _gather_sum(attrs, table, ids):
    """Gather(table, ids) then ReduceSum over the ids' last axis, without the (batch, k, width) tensor:
    the folded first layer, row by row in the order ReduceSum adds them."""
    ids = _indices(ids, len(table))
    out = table[ids[:, 0]]
    for i in range(1, ids.shape[1]):
        out += table[ids[:, i]]
    return out


def _clip(attrs, x, low=None, high=None):
    """Clip with its bounds as inputs (opset 11+); a bound left out does not clip."""
    if low is not None:
        x = np.maximum(x, low.astype(x.dtype))
    if high is not None:
        x = np.minimum(x, high.astype(x.dtype))
    return x


def _transpose(attrs, x):
    perm = attrs.get("perm")
    return np.transpose(x, None if perm is None else tuple(perm))


def _unsqueeze(attrs, axes, x):
    out = x
    for axis in sorted(a % (x.ndim + len(axes)) for a in axes):
        out = np.expand_dims(out, axis)
    return out


def _squeeze(attrs, axes, x):
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=axes)


# op type -> (function of (attributes, *inputs)), all in float32 as onnxruntime computes them
OPS = {
    "Gather": _gather,
    "Reshape": _reshape,
    "Gemm": _gemm,
    "MatMul": lambda attrs, a, b: matmul(a, b),
    "Add": lambda attrs, a, b: a + b,
    "Sub": lambda attrs, a, b: a - b,
    "Mul": lambda attrs, a, b: a * b,
    "Div": lambda attrs, a, b: a / b,
    "Tanh": lambda attrs, x: np.tanh(x),
    "Floor": lambda attrs, x: np.floor(x),
    "Clip": _clip,
    "Relu": lambda attrs, x: np.maximum(x, np.float32(0)),
    "Identity": lambda attrs, x: x,
    "LogSoftmax": _log_softmax,
    "Softmax": _softmax,
    "Concat": lambda attrs, *xs: np.concatenate(xs, axis=attrs.get("axis", 0)),
    "LayerNormalization": _layer_norm,
    "DequantizeLinear": _dequantize,
    "Cast": lambda attrs, x: x.astype(CAST_TYPES[attrs["to"]]),
    "Constant": lambda attrs: attrs["value"],
    "Transpose": _transpose,
}


def _table_lookup(attrs, x, scale, table):
    """``Gather(table, Cast(Clip(Floor(x * scale), 0, len(table) - 1)))``, in place after the product."""
    index = np.multiply(x, scale, dtype=np.float32)
    np.floor(index, out=index)
    np.clip(index, 0, len(table) - 1, out=index)
    return np.take(table, index.astype(np.intp), mode="clip")  # NaN would cast to any int: clipped too


# ours: made by numpy_engine on load, never accepted from a file
FUSED_OPS = {"GatherSum": _gather_sum, "TableLookup": _table_lookup,
             "MatMulFloat32": lambda attrs, a, b: np.matmul(a, b)}
AXES_OPS = {"Unsqueeze": (_unsqueeze, 1), "Squeeze": (_squeeze, 1), "ReduceLogSumExp": (_reduce_log_sum_exp, 1),
            "ReduceSum": (_reduce_sum, 1)}
