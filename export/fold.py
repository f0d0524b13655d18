"""Fold the embedding into the first layer: ``concat_i E[c_i] @ W1 = sum_i (E @ W1_i)[c_i]``.

W1 (hidden x context_size*embed_dim) splits into one block W1_i per context position,
and ``T_i = E @ W1_i`` is a vocab x hidden table per position. The first layer then
becomes context_size row look-ups and a sum, in place of a matrix product per call.

The file keeps E and W1 as they are (no larger, and the embedding table stays
readable); the graph computes the stacked tables from them with constant nodes
(Reshape, Transpose, MatMul, Reshape), which onnxruntime folds into one constant
when the session starts and the numpy engine folds on load. Per call the graph
then runs:

    Add(context, position offsets)  -> ids into the stacked table   (batch, context_size)
    Gather(tables, ids)                                            (batch, context_size, hidden)
    ReduceSum(axis 1) + b1                                         (batch, hidden)

which is what followed the Gemm before (LayerNorm, tanh, ...), for every member.
"""

from __future__ import annotations

import numpy as np

from nametool.runtime.errors import NametoolError
from nametool.runtime.schema import INPUT_NAME


def fold_first_layer(proto, vocab_size: int, context_size: int):
    """A copy of ``proto`` with every member's first Gemm folded; raises if there is none to fold."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    initializers = {t.name: t for t in graph.initializer}
    offsets = f"{INPUT_NAME}_position_offsets"
    graph.initializer.append(numpy_helper.from_array(np.arange(context_size, dtype=np.int64) * vocab_size, offsets))
    ids = f"{INPUT_NAME}_table_ids"
    nodes, folded = [helper.make_node("Add", [INPUT_NAME, offsets], [ids], name="table_ids")], 0
    for node in graph.node:
        found = _first_layer(node, producer, initializers)
        if found is None:
            nodes.append(node)
            continue
        embedding, weight, bias, hidden, embed_dim = found
        p = node.output[0]  # names below are this Gemm's output with a suffix: unique per member
        shapes = {f"{p}_w_shape": [hidden, context_size, embed_dim], f"{p}_t_shape": [context_size * vocab_size, hidden],
                  f"{p}_axes": [1]}
        graph.initializer.extend(numpy_helper.from_array(np.array(v, dtype=np.int64), k) for k, v in shapes.items())
        nodes += [
            # the tables, from weights only: folded to a constant on load
            helper.make_node("Reshape", [weight, f"{p}_w_shape"], [f"{p}_w_blocks"]),  # (hidden, context, embed)
            helper.make_node("Transpose", [f"{p}_w_blocks"], [f"{p}_w_by_position"], perm=[1, 2, 0]),
            helper.make_node("MatMul", [embedding, f"{p}_w_by_position"], [f"{p}_tables"]),  # (context, vocab, hidden)
            helper.make_node("Reshape", [f"{p}_tables", f"{p}_t_shape"], [f"{p}_stacked"]),
            # per call: one row per position, summed
            helper.make_node("Gather", [f"{p}_stacked", ids], [f"{p}_rows"], axis=0),  # (batch, context, hidden)
            helper.make_node("ReduceSum", [f"{p}_rows", f"{p}_axes"], [f"{p}_sum"], keepdims=0),
            helper.make_node("Add", [f"{p}_sum", bias], [node.output[0]], name=f"{p}_folded"),
        ]
        folded += 1
    if not folded:
        raise NametoolError("found no first layer to fold (Gather, Reshape, Gemm); export with --no-fold")
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused(graph)
    return model


def _first_layer(node, producer: dict, initializers: dict):
    """(embedding, W1, b1, hidden, embed_dim) if ``node`` is a Gemm of the concatenated context embeddings."""
    if node.op_type != "Gemm" or len(node.input) != 3:
        return None
    attributes = {a.name: a for a in node.attribute}
    if not attributes.get("transB") or attributes["transB"].i != 1 or (attributes.get("transA") and
                                                                       attributes["transA"].i):
        return None
    if any(name in attributes and attributes[name].f != 1.0 for name in ("alpha", "beta")):
        return None
    reshape = producer.get(node.input[0])
    gather = producer.get(reshape.input[0]) if reshape is not None and reshape.op_type == "Reshape" else None
    if gather is None or gather.op_type != "Gather" or list(gather.input[1:]) != [INPUT_NAME]:
        return None
    embedding, bias = initializers.get(gather.input[0]), initializers.get(node.input[2])
    # W1 is stored (fp32) or made from stored int8 values (Cast, Mul); b1 is stored either way
    if embedding is None or bias is None or (node.input[1] not in initializers and node.input[1] not in producer):
        return None
    return gather.input[0], node.input[1], node.input[2], bias.dims[0], embedding.dims[1]


def _drop_unused(graph) -> None:
    """Nodes whose outputs nothing needs any more (the embeddings' Gather and Reshape), then the
    initializers no node reads."""
    needed, keep_nodes = {o.name for o in graph.output}, []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            keep_nodes.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep_nodes))
    used = {name for node in graph.node for name in node.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
