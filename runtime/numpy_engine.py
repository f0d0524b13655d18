"""Run a nametool ``.onnx`` graph with numpy alone: for devices onnxruntime has no wheel for.

Only the operators nametool's exports use are implemented, with ONNX's semantics
for the attributes those exports set; any other operator is refused on load in one
line naming it. Nodes whose inputs are all weights (an int8 file's Cast and Mul,
the folded first layer's tables) are computed once on load.
"""

from __future__ import annotations

import numpy as np

from nametool.runtime.errors import ModelFileError
from nametool.runtime.onnxfile import OnnxFile

ONNX_DOMAINS = ("", "ai.onnx")
CAST_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 11: np.float64}


def _axes(node_inputs, attrs, values, index: int):
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


def _matmul(a, b):
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
    else:  # as _matmul, with the scaling and the bias added before the one rounding
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
    "MatMul": lambda attrs, a, b: _matmul(a, b),
    "Add": lambda attrs, a, b: a + b,
    "Sub": lambda attrs, a, b: a - b,
    "Mul": lambda attrs, a, b: a * b,
    "Div": lambda attrs, a, b: a / b,
    "Tanh": lambda attrs, x: np.tanh(x),
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
FUSED_OPS = {"GatherSum": _gather_sum}  # ours: made by _fuse_gather_sum, never accepted from a file
AXES_OPS = {"Unsqueeze": (_unsqueeze, 1), "Squeeze": (_squeeze, 1), "ReduceLogSumExp": (_reduce_log_sum_exp, 1),
            "ReduceSum": (_reduce_sum, 1)}


class UnsupportedOperator(ModelFileError):
    """The graph holds an operator the numpy engine does not implement (onnxruntime may run it)."""


class NumpyGraph:
    """A nametool graph evaluated with numpy: ``run(contexts) -> logits``."""

    def __init__(self, file: OnnxFile):
        if len(file.inputs) != 1 or len(file.outputs) != 1:
            raise ModelFileError(f"the numpy engine needs one graph input and one output, "
                                 f"not {len(file.inputs)} and {len(file.outputs)}")
        self.input, self.output = file.inputs[0].name, file.outputs[0].name
        values = dict(file.initializers)
        known = set(values) | {self.input, ""}
        steps = []
        for node in file.nodes:
            _check_supported(node)
            missing = [name for name in node.inputs if name not in known]
            if missing:
                raise ModelFileError(f"node {node.name or node.op_type!r} reads {missing[0]!r} before it is made")
            if all(name in values or name == "" for name in node.inputs):  # weights only: fold now
                for name, value in zip(node.outputs, self._apply(node, values)):
                    values[name] = value
            else:
                steps.append(node)
            known.update(node.outputs)
        if self.output not in known:
            raise ModelFileError(f"no node makes the graph output {self.output!r}")
        steps = _fold_first_layers(steps, values, self.input)
        self._steps = _fuse_gather_sum(steps, values)
        self.folded = any(node.op_type == "GatherSum" for node in self._steps)
        self._constants = _widen_matmul_weights(self._steps, values)

    def run(self, contexts: np.ndarray) -> np.ndarray:
        values = dict(self._constants)
        values[self.input] = contexts
        for node in self._steps:
            for name, value in zip(node.outputs, self._apply(node, values)):
                values[name] = value
        return values[self.output]

    @staticmethod
    def _apply(node, values) -> tuple[np.ndarray, ...]:
        args = [values[name] if name else None for name in node.inputs]
        while args and args[-1] is None:  # trailing optional inputs left out
            args.pop()
        try:
            if node.op_type in AXES_OPS:
                func, index = AXES_OPS[node.op_type]
                axes = _axes(node.inputs, node.attributes, args, index)
                out = func(node.attributes, axes, args[0])
            else:
                out = (OPS.get(node.op_type) or FUSED_OPS[node.op_type])(node.attributes, *args)
        except ModelFileError as exc:
            raise ModelFileError(f"{node.op_type} node {node.name!r}: {exc}") from None
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise ModelFileError(f"{node.op_type} node {node.name!r} failed in the numpy engine ({exc})") from None
        return (np.asarray(out),)


def _fold_first_layers(steps: list, values: dict, context: str) -> list:
    """The lecture's first layer, ``Gemm(Reshape(Gather(E, context)), W1, b1)``, rewritten as the folded
    one export writes (``export/fold.py``): per-position tables ``E @ W1_i`` made here, once, then a
    row look-up and sum per position and the bias. In numpy the folded form is the faster one for
    every model measured (bench/fold.py: 1.4x for the lecture's 10-d model at batch 4,096, 2.7x for
    the default), whichever form the file holds for onnxruntime.

    The tables are computed as the folded graph's constant MatMul is (``_matmul``: float64, rounded
    once), so a plain file gives the logits of the folded file of the same checkpoint, bit for bit
    (tests/test_fold.py). Anything not exactly this pattern is left as it is.
    """
    from nametool.runtime.onnxfile import Node

    readers: dict[str, int] = {}
    for node in steps:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    made = {out: node for node in steps for out in node.outputs}
    dropped, out = set(), []
    for node in steps:
        found = _plain_first_layer(node, made, readers, values, context)
        if found is None:
            out.append(node)
            continue
        gather, reshape, embedding, weight, bias = found
        (vocab, embed_dim), (hidden, width) = embedding.shape, weight.shape
        positions = width // embed_dim
        ids = f"{context}__table_ids_{vocab}"
        if f"{ids}_offsets" not in values:  # one per vocabulary size: members share it
            values[f"{ids}_offsets"] = np.arange(positions, dtype=np.int64) * vocab
            out.append(Node("Add", "", ids, (context, f"{ids}_offsets"), (ids,), {}))
        tables = _matmul(embedding, weight.reshape(hidden, positions, embed_dim).transpose(1, 2, 0))
        values[f"{node.outputs[0]}__tables"] = tables.reshape(positions * vocab, hidden)
        summed = node.outputs[0] if bias is None else f"{node.outputs[0]}__sum"
        out.append(Node("GatherSum", "", node.name, (f"{node.outputs[0]}__tables", ids), (summed,), {}))
        if bias is not None:
            out.append(Node("Add", "", node.name, (summed, bias), node.outputs, {}))
        dropped.update((id(gather), id(reshape)))
    return [node for node in out if id(node) not in dropped]


def _plain_first_layer(node, made: dict, readers: dict, values: dict, context: str):
    """(gather, reshape, E, W1 as (hidden, context*embed), b1's name or None) if ``node`` is the Gemm of a
    plain first layer reading only the gathered context embeddings; else None."""
    attrs = node.attributes
    if (node.op_type != "Gemm" or attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0 or len(node.inputs) < 2):
        return None
    reshape = made.get(node.inputs[0])
    gather = made.get(reshape.inputs[0]) if reshape is not None and reshape.op_type == "Reshape" else None
    if (gather is None or gather.op_type != "Gather" or gather.attributes.get("axis", 0) != 0
            or tuple(gather.inputs) != (gather.inputs[0], context) or gather.inputs[0] not in values
            or readers.get(gather.outputs[0]) != 1 or readers.get(reshape.outputs[0]) != 1
            or len(reshape.inputs) != 2 or reshape.inputs[1] not in values or node.inputs[1] not in values):
        return None
    embedding, weight = values[gather.inputs[0]], values[node.inputs[1]]
    weight = weight if attrs.get("transB", 0) else weight.T
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    shape = values[reshape.inputs[1]].tolist()
    if (embedding.ndim != 2 or weight.ndim != 2 or embedding.dtype != np.float32 or weight.dtype != np.float32
            or not embedding.shape[1] or weight.shape[1] % embedding.shape[1] or len(shape) != 2
            or shape[0] != -1 or shape[1] != weight.shape[1]
            or (bias is not None and (bias not in values or values[bias].shape != (weight.shape[0],)))):
        return None
    return gather, reshape, embedding, weight, bias


def _fuse_gather_sum(steps: list, values: dict) -> tuple:
    """Gather from a weight table followed only by a ReduceSum over the gathered axis becomes one step."""
    from nametool.runtime.onnxfile import Node

    readers = {}
    for node in steps:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    made = {node.outputs[0]: node for node in steps}
    fused, skip = [], set()
    for node in steps:
        source = made.get(node.inputs[0]) if node.inputs else None
        if (node.op_type == "ReduceSum" and source is not None and source.op_type == "Gather"
                and readers.get(source.outputs[0]) == 1 and source.attributes.get("axis", 0) == 0
                and source.inputs[0] in values and values[source.inputs[0]].ndim == 2
                and not node.attributes.get("keepdims", 1) and len(node.inputs) == 2 and node.inputs[1] in values
                and values[node.inputs[1]].tolist() == [1]):
            skip.add(id(source))
            fused.append(Node("GatherSum", "", node.name, (source.inputs[0], source.inputs[1]), node.outputs, {}))
        else:
            fused.append(node)
    return tuple(node for node in fused if id(node) not in skip)


def _widen_matmul_weights(steps: tuple, values: dict) -> dict:
    """The float32 weights that only MatMul/Gemm read as B or C, stored as float64 once,
    so that ``_matmul`` and ``_gemm`` do not widen them at every call."""
    slots: dict[str, bool] = {}
    for node in steps:
        for i, name in enumerate(node.inputs):
            wide_slot = node.op_type in ("MatMul", "Gemm") and i >= 1
            slots[name] = slots.get(name, True) and wide_slot
    return {name: value.astype(np.float64) if slots.get(name) and value.dtype == np.float32 else value
            for name, value in values.items()}


def _check_supported(node) -> None:
    if node.domain not in ONNX_DOMAINS or (node.op_type not in OPS and node.op_type not in AXES_OPS):
        where = f"{node.domain}." if node.domain not in ONNX_DOMAINS else ""
        raise UnsupportedOperator(
            f"the numpy engine cannot run operator {where}{node.op_type} (node {node.name!r}); "
            "it runs only what this nametool exports (re-export the model, or use --engine onnxruntime)"
        )
    if len(node.outputs) != 1:
        raise ModelFileError(f"{node.op_type} node {node.name!r}: the numpy engine handles one output per node, "
                             f"not {len(node.outputs)}")
