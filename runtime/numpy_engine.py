"""Run a nametool ``.onnx`` graph with numpy alone: for devices onnxruntime has no wheel for.

Only the operators nametool's exports use are implemented, with ONNX's semantics
for the attributes those exports set; any other operator is refused on load in one
line naming it. Nodes whose inputs are all weights (an int8 file's Cast and Mul,
the folded first layer's tables) are computed once on load.
"""

from __future__ import annotations

import numpy as np

from nametool.runtime.errors import ModelFileError
from nametool.runtime.exact import TABLES
from nametool.runtime.numpy_ops import AXES_OPS, FUSED_OPS, ONNX_DOMAINS, OPS, axes_of, matmul
from nametool.runtime.onnxfile import Node, OnnxFile


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
        shape = file.inputs[0].shape
        width = shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None  # context size, if stated
        steps = _fold_first_layers(steps, values, self.input, width)
        steps = _fuse_gather_sum(steps, values)
        if TABLES in values:  # an exact file: every value an integer below 2^24, checked on load
            steps = _exact_steps(steps, values)
        self._steps = steps
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
                axes = axes_of(node.inputs, node.attributes, args, index)
                out = func(node.attributes, axes, args[0])
            else:
                out = (OPS.get(node.op_type) or FUSED_OPS[node.op_type])(node.attributes, *args)
        except ModelFileError as exc:
            raise ModelFileError(f"{node.op_type} node {node.name!r}: {exc}") from None
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise ModelFileError(f"{node.op_type} node {node.name!r} failed in the numpy engine ({exc})") from None
        return (np.asarray(out),)


# A plain first layer is folded on load only while its tables stay within this many times the size
# of the W1 they stand in for (the ratio is vocab / embed_dim: 2.7 for the lecture's shape, 0.84 for
# the default's): a vocabulary of thousands keeps its Gemm rather than hold tables of hundreds of MB.
MAX_TABLE_GROWTH = 16


def _fold_first_layers(steps: list, values: dict, context: str, width) -> list:
    """The lecture's first layer, ``Gemm(Reshape(Gather(E, context)), W1, b1)``, rewritten as the folded
    one export writes (``export/fold.py``): per-position tables ``E @ W1_i`` made here, once, then a
    row look-up and sum per position and the bias. In numpy the folded form is the faster one for
    every model measured (bench/fold.py: 1.4x for the lecture's 10-d model at batch 4,096, 2.7x for
    the default), whichever form the file holds for onnxruntime.

    The tables are computed as the folded graph's constant MatMul is (``numpy_ops.matmul``: float64,
    rounded once), so a plain file gives the logits of the folded file of the same checkpoint, bit
    for bit (tests/test_fold.py). Anything not exactly this pattern is left as it is.
    """
    readers, made = _readers(steps), {out: node for node in steps for out in node.outputs}
    dropped, out = set(), []
    for node in steps:
        found = _plain_first_layer(node, made, readers, values, context)
        if found is None:
            out.append(node)
            continue
        gather, reshape, embedding, weight, bias = found
        (vocab, embed_dim), (hidden, span) = embedding.shape, weight.shape
        positions = span // embed_dim
        if width is not None and positions != width:  # W1 would not span the context's embeddings
            out.append(node)
            continue
        ids = f"{context}__table_ids_{positions}x{vocab}"
        if f"{ids}_offsets" not in values:  # one per table layout: members share it
            values[f"{ids}_offsets"] = np.arange(positions, dtype=np.int64) * vocab
            out.append(Node("Add", "", ids, (context, f"{ids}_offsets"), (ids,), {}))
        tables = matmul(embedding, weight.reshape(hidden, positions, embed_dim).transpose(1, 2, 0))
        values[f"{node.outputs[0]}__tables"] = tables.reshape(positions * vocab, hidden)
        summed = node.outputs[0] if bias is None else f"{node.outputs[0]}__sum"
        out.append(Node("GatherSum", "", node.name, (f"{node.outputs[0]}__tables", ids), (summed,), {}))
        if bias is not None:
            out.append(Node("Add", "", node.name, (summed, bias), node.outputs, {}))
        dropped.update((id(gather), id(reshape)))
    return [node for node in out if id(node) not in dropped]


def _plain_first_layer(node, made: dict, readers: dict, values: dict, context: str):
    """(gather, reshape, E, W1 as (hidden, context*embed), b1's name or None) if ``node`` is the Gemm of a
    plain first layer reading only the gathered context embeddings, with tables worth making; else None."""
    attrs = node.attributes
    if node.op_type != "Gemm" or len(node.inputs) < 2 or node.inputs[1] not in values:
        return None
    if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
        return None
    reshape = made.get(node.inputs[0])
    if reshape is None or reshape.op_type != "Reshape" or len(reshape.inputs) != 2 or reshape.inputs[1] not in values:
        return None
    gather = made.get(reshape.inputs[0])
    if gather is None or gather.op_type != "Gather" or gather.attributes.get("axis", 0) != 0:
        return None
    if len(gather.inputs) != 2 or gather.inputs[1] != context or gather.inputs[0] not in values:
        return None
    if readers.get(gather.outputs[0]) != 1 or readers.get(reshape.outputs[0]) != 1:
        return None  # the embeddings are read elsewhere too: they must stay
    embedding, weight = values[gather.inputs[0]], values[node.inputs[1]]
    weight = weight if attrs.get("transB", 0) else weight.T
    if embedding.ndim != 2 or weight.ndim != 2 or not embedding.shape[1] or weight.shape[1] % embedding.shape[1]:
        return None
    if embedding.dtype != np.float32 or weight.dtype != np.float32:
        return None
    if values[reshape.inputs[1]].tolist() != [-1, weight.shape[1]]:
        return None
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    if bias is not None and (bias not in values or values[bias].shape != (weight.shape[0],)):
        return None
    vocab, positions = embedding.shape[0], weight.shape[1] // embedding.shape[1]
    if positions * vocab > MAX_TABLE_GROWTH * weight.shape[1]:  # table rows against W1's columns
        return None
    return gather, reshape, embedding, weight, bias


def _readers(steps) -> dict[str, int]:
    """How many step inputs read each value."""
    readers: dict[str, int] = {}
    for node in steps:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    return readers


def _fuse_gather_sum(steps: list, values: dict) -> tuple:
    """Gather from a weight table followed only by a ReduceSum over the gathered axis becomes one step."""
    readers, made = _readers(steps), {node.outputs[0]: node for node in steps}
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


def _exact_steps(steps: tuple, values: dict) -> tuple:
    """An exact graph's steps in fewer passes, the same integers: ``Gather(table, Cast(Clip(Floor(
    Mul(x, scale)), 0, len(table) - 1)))`` as one ``TableLookup``, and MatMul in float32 (its products
    and partial sums are integers below 2^24, exact in float32, so float64 would only cost time)."""
    readers, made = _readers(steps), {node.outputs[0]: node for node in steps}

    def source(node, op, index=0):
        found = made.get(node.inputs[index]) if len(node.inputs) > index else None
        return found if found is not None and found.op_type == op and readers.get(found.outputs[0]) == 1 else None

    out, skip = [], set()
    for node in steps:
        cast = source(node, "Cast", 1) if node.op_type == "Gather" and node.inputs[0] in values else None
        clip = source(cast, "Clip") if cast is not None and cast.attributes.get("to") == 7 else None
        floor = source(clip, "Floor") if clip is not None and len(clip.inputs) == 3 else None
        mul = source(floor, "Mul") if floor is not None else None
        table = values.get(node.inputs[0])
        if (mul is not None and mul.inputs[1] in values and table.ndim == 1 and node.attributes.get("axis", 0) == 0
                and all(name in values for name in clip.inputs[1:])
                and values[clip.inputs[1]].tolist() == 0 and values[clip.inputs[2]].tolist() == len(table) - 1):
            skip.update(id(n) for n in (cast, clip, floor, mul))
            out.append(Node("TableLookup", "", node.name, (mul.inputs[0], mul.inputs[1], node.inputs[0]),
                            node.outputs, {}))
        elif node.op_type == "MatMul":
            out.append(node._replace(op_type="MatMulFloat32"))
        else:
            out.append(node)
    return tuple(node for node in out if id(node) not in skip)


def _widen_matmul_weights(steps: tuple, values: dict) -> dict:
    """The constants the steps read, with the float32 weights that only MatMul/Gemm read as B or C
    stored as float64 once, so that ``matmul`` and ``_gemm`` do not widen them at every call.
    Constants no step reads (a folded layer's E and W1) are let go."""
    slots: dict[str, bool] = {}
    for node in steps:
        for i, name in enumerate(node.inputs):
            wide_slot = node.op_type in ("MatMul", "Gemm") and i >= 1
            slots[name] = slots.get(name, True) and wide_slot
    return {name: value.astype(np.float64) if slots[name] and value.dtype == np.float32 else value
            for name, value in values.items() if name in slots}


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
    for key, value in node.attributes.items():  # a tensor only as a Constant's value: nametool writes no other
        if isinstance(value, np.ndarray) and not (node.op_type == "Constant" and key == "value"):
            raise ModelFileError(f"{node.op_type} node {node.name!r}: attribute {key!r} holds a tensor")
