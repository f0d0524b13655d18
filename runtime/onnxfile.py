"""Reading an ONNX file without the onnx package: the few protobuf fields nametool needs.

The runtime uses this to scan weights for NaN and inf, to take the digests that
``verify`` compares, and to hand the numpy engine its graph. Field numbers are
those of onnx.proto3; only what nametool's exports hold is decoded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from nametool.runtime.errors import ModelFileError

# ModelProto
MODEL_OPSET_IMPORT, MODEL_GRAPH, MODEL_METADATA, MODEL_FUNCTIONS = 8, 7, 14, 25
OPSET_DOMAIN, OPSET_VERSION = 1, 2
ENTRY_KEY, ENTRY_VALUE = 1, 2
FUNCTION_NODES = 7
# GraphProto
GRAPH_NODES, GRAPH_INITIALIZERS, GRAPH_INPUTS, GRAPH_OUTPUTS, GRAPH_SPARSE_INITIALIZERS = 1, 5, 11, 12, 15
SPARSE_VALUES = 1
# NodeProto and AttributeProto
NODE_INPUT, NODE_OUTPUT, NODE_NAME, NODE_OP_TYPE, NODE_ATTRIBUTES, NODE_DOMAIN = 1, 2, 3, 4, 5, 7
ATTRIBUTE_NAME, ATTRIBUTE_F, ATTRIBUTE_I, ATTRIBUTE_S, ATTRIBUTE_TENSOR, ATTRIBUTE_GRAPH = 1, 2, 3, 4, 5, 6
ATTRIBUTE_FLOATS, ATTRIBUTE_INTS, ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPHS = 7, 8, 10, 11
# TensorProto
TENSOR_DIMS, TENSOR_TYPE, TENSOR_FLOATS, TENSOR_INT32S, TENSOR_INT64S = 1, 2, 4, 5, 7
TENSOR_NAME, TENSOR_RAW, TENSOR_DOUBLES, TENSOR_EXTERNAL = 8, 9, 10, 13
# ValueInfoProto -> TypeProto -> TypeProto.Tensor -> TensorShapeProto -> Dimension
VALUE_NAME, VALUE_TYPE, TYPE_TENSOR, TENSOR_ELEM_TYPE, TENSOR_SHAPE, SHAPE_DIM, DIM_VALUE, DIM_PARAM = (
    1, 2, 1, 1, 2, 1, 1, 2)

# onnx TensorProto.DataType -> numpy dtype, for the types nametool's files hold
DTYPES = {1: "<f4", 2: "u1", 3: "i1", 5: "<i2", 6: "<i4", 7: "<i8", 9: "?", 10: "<f2", 11: "<f8"}
TYPE_NAMES = {1: "float", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
              11: "double", 16: "bfloat16"}
FLOAT_DTYPES = {1: "<f4", 10: "<f2", 11: "<f8", 16: "bfloat16"}
MAX_NESTING = 32  # subgraphs inside subgraphs; onnxruntime itself stops at a similar depth


class Malformed(Exception):
    """The protobuf framing is broken on the way to a field we need."""


class Node(NamedTuple):
    op_type: str
    domain: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any]


class ValueInfo(NamedTuple):
    """A graph input or output: name, onnx element type name and dims (int, symbolic str or None)."""

    name: str
    type: str  # as onnxruntime spells it: "tensor(int64)"
    shape: tuple


class OnnxFile(NamedTuple):
    """The parts of a ModelProto that nametool reads (the top-level graph only)."""

    opsets: dict[str, int]
    nodes: tuple[Node, ...]
    initializers: dict[str, np.ndarray]
    inputs: tuple[ValueInfo, ...]
    outputs: tuple[ValueInfo, ...]
    metadata: dict[str, str]


def read_onnx(data: bytes) -> OnnxFile:
    """Parse a model file's bytes; raises ModelFileError on anything we cannot read."""
    try:
        return _read_model(memoryview(data))
    except Malformed as exc:
        detail = f": {exc}" if str(exc) else " (bad protobuf framing)"
        raise ModelFileError(f"not a well-formed ONNX file{detail}") from None
    except UnicodeDecodeError:
        raise ModelFileError("not a well-formed ONNX file (a name or string is not UTF-8)") from None


def _read_model(model: memoryview) -> OnnxFile:
    opsets, metadata, graph = {}, {}, None
    for number, value in _fields(model):
        if number == MODEL_OPSET_IMPORT:
            entry = dict(_fields(_message(value)))
            opsets[_text(entry.get(OPSET_DOMAIN, b""))] = _int(entry.get(OPSET_VERSION, 0))
        elif number == MODEL_METADATA:
            entry = dict(_fields(_message(value)))
            key = _text(entry.get(ENTRY_KEY, b""))
            if key in metadata:  # readers disagree on which copy wins: none is taken
                raise Malformed(f"metadata entry {key!r} appears twice")
            metadata[key] = _text(entry.get(ENTRY_VALUE, b""))
        elif number == MODEL_GRAPH:
            if graph is not None:  # protobuf merges a repeated message field; our readers would not
                raise Malformed("the graph field appears twice")
            graph = _message(value)
    if graph is None:
        raise Malformed("no graph")
    nodes, initializers, inputs, outputs = [], {}, [], []
    for number, value in _fields(graph):
        if number == GRAPH_NODES:
            nodes.append(_node(_message(value)))
        elif number == GRAPH_INITIALIZERS:
            name, array = tensor_array(_message(value))
            if name in initializers:  # onnxruntime runs the first copy, a dict would keep the last
                raise Malformed(f"initializer {name!r} appears twice")
            initializers[name] = array
        elif number == GRAPH_INPUTS:
            inputs.append(_value_info(_message(value)))
        elif number == GRAPH_OUTPUTS:
            outputs.append(_value_info(_message(value)))
    inputs = [i for i in inputs if i.name not in initializers]  # old exporters list weights as inputs
    return OnnxFile(opsets, tuple(nodes), initializers, tuple(inputs), tuple(outputs), metadata)


def _node(node: memoryview) -> Node:
    inputs, outputs, attributes, op_type, domain, name = [], [], {}, "", "", ""
    for number, value in _fields(node):
        if number == NODE_INPUT:
            inputs.append(_text(value))
        elif number == NODE_OUTPUT:
            outputs.append(_text(value))
        elif number == NODE_NAME:
            name = _text(value)
        elif number == NODE_OP_TYPE:
            op_type = _text(value)
        elif number == NODE_DOMAIN:
            domain = _text(value)
        elif number == NODE_ATTRIBUTES:
            key, attribute = _attribute(_message(value))
            attributes[key] = attribute
    return Node(op_type, domain, name, tuple(inputs), tuple(outputs), attributes)


def _attribute(attribute: memoryview) -> tuple[str, Any]:
    """(name, value): a float, int, string, tensor, or list of floats or ints; subgraphs as None."""
    name, value, floats, ints = "", None, [], []
    for number, raw in _fields(attribute):
        if number == ATTRIBUTE_NAME:
            name = _text(raw)
        elif number == ATTRIBUTE_F:
            value = float(np.frombuffer(_message(raw), "<f4")[0])
        elif number == ATTRIBUTE_I:
            value = _signed(_int(raw))
        elif number == ATTRIBUTE_S:
            value = bytes(_message(raw)).decode("utf-8")
        elif number == ATTRIBUTE_TENSOR:
            value = tensor_array(_message(raw))[1]
        elif number == ATTRIBUTE_FLOATS:
            floats.extend(_packed_floats(raw))
        elif number == ATTRIBUTE_INTS:
            ints.extend(_signed(v) for v in _packed_varints(raw))
    if value is None and (floats or ints):
        value = floats or ints
    return name, value


def _value_info(info: memoryview) -> ValueInfo:
    name, elem, dims = "", 0, []
    for number, value in _fields(info):
        if number == VALUE_NAME:
            name = _text(value)
        elif number == VALUE_TYPE:
            tensor = dict(_fields(_message(value))).get(TYPE_TENSOR)
            if tensor is None:
                continue
            for inner, part in _fields(_message(tensor)):
                if inner == TENSOR_ELEM_TYPE:
                    elem = _int(part)
                elif inner == TENSOR_SHAPE:
                    dims = [_dim(_message(d)) for n, d in _fields(_message(part)) if n == SHAPE_DIM]
    return ValueInfo(name, f"tensor({TYPE_NAMES.get(elem, elem)})", tuple(dims))


def _dim(dim: memoryview):
    entry = dict(_fields(dim))
    if DIM_VALUE in entry:
        return _int(entry[DIM_VALUE])
    return _text(entry[DIM_PARAM]) if DIM_PARAM in entry else None


def tensor_array(tensor: memoryview) -> tuple[str, np.ndarray]:
    """(name, values) of a TensorProto, for the element types in ``DTYPES``."""
    name, dtype, dims, raw, listed = "", None, [], None, None
    for number, value in _fields(tensor):
        if number == TENSOR_NAME:
            name = _text(value)
        elif number == TENSOR_TYPE:
            dtype = _int(value)
        elif number == TENSOR_DIMS:
            dims.extend(_packed_varints(value))
        elif number == TENSOR_RAW:
            raw = _message(value)
        elif number == TENSOR_FLOATS:  # a field may repeat: extended in place, not copied each time
            listed = [] if listed is None else listed
            listed.extend(_packed_floats(value))
        elif number in (TENSOR_INT32S, TENSOR_INT64S):
            listed = [] if listed is None else listed
            listed.extend(_signed(v) for v in _packed_varints(value))
        elif number == TENSOR_EXTERNAL:
            raise Malformed(f"tensor {name!r} keeps its data in another file")
    if dtype not in DTYPES:
        raise Malformed(f"tensor {name!r} has element type {TYPE_NAMES.get(dtype, dtype)}, which nametool never writes")
    count = math.prod(dims)  # Python integers: dims that overflow 64 bits stay what they say
    if raw is not None:
        if len(raw) % np.dtype(DTYPES[dtype]).itemsize:
            raise Malformed(f"tensor {name!r} has {len(raw)} bytes of data, not a whole number of "
                            f"{TYPE_NAMES[dtype]} values")
        values = np.frombuffer(raw, dtype=DTYPES[dtype])
    else:
        values = np.array(listed or [], dtype=np.float64 if dtype in (1, 10, 11) else np.int64).astype(DTYPES[dtype])
    if values.size != count:
        raise Malformed(f"tensor {name!r} holds {values.size} values for dims {dims}")
    return name, values.reshape(dims).astype(values.dtype.newbyteorder("="), copy=False)


def nonfinite_weights(data: bytes) -> str | None:
    """Name the first stored float tensor of an ONNX file holding NaN or inf, or None if all are finite.

    Every tensor is scanned, subgraphs and functions included. Raises ModelFileError
    if the protobuf is malformed on the way to a tensor.
    """
    try:
        for tensor in _model_tensors(memoryview(data)):
            found = _nonfinite(tensor)
            if found:
                return found
    except Malformed:
        raise ModelFileError("not a well-formed ONNX file (bad protobuf framing)") from None
    return None


def weight_digests(data: bytes) -> tuple[dict[str, str], str]:
    """SHA-256 of each top-level initializer's stored bytes, and of everything else but the metadata.

    The second digest covers the nodes, inputs, outputs, opsets and functions: any change
    to the file outside ``metadata_props`` changes one of these.
    """
    import hashlib  # here: loading a model needs no digest, and the import costs start-up time

    tensors, rest = {}, hashlib.sha256()
    try:
        for number, value in _fields(memoryview(data)):
            if number == MODEL_METADATA:
                continue
            if number != MODEL_GRAPH:
                _digest_field(rest, number, value)
                continue
            for inner, part in _fields(_message(value)):
                if inner == GRAPH_INITIALIZERS:
                    name = _text(dict(_fields(_message(part))).get(TENSOR_NAME, b""))
                    tensors[name] = hashlib.sha256(_message(part)).hexdigest()
                else:
                    _digest_field(rest, inner, part)
    except Malformed:
        raise ModelFileError("not a well-formed ONNX file (bad protobuf framing)") from None
    return tensors, rest.hexdigest()


def _digest_field(digest, number: int, value) -> None:
    payload = str(value).encode() if isinstance(value, int) else bytes(value)
    digest.update(f"{number}:{len(payload)}:".encode())
    digest.update(payload)


def _model_tensors(model: memoryview) -> Iterator[memoryview]:
    for number, value in _fields(model):
        if number == MODEL_GRAPH:
            yield from _graph_tensors(_message(value), 0)
        elif number == MODEL_FUNCTIONS:
            for inner, node in _fields(_message(value)):
                if inner == FUNCTION_NODES:
                    yield from _node_tensors(_message(node), 0)


def _graph_tensors(graph: memoryview, depth: int) -> Iterator[memoryview]:
    if depth > MAX_NESTING:
        raise Malformed
    for number, value in _fields(graph):
        if number == GRAPH_INITIALIZERS:
            yield _message(value)
        elif number == GRAPH_SPARSE_INITIALIZERS:
            yield from (_message(v) for n, v in _fields(_message(value)) if n == SPARSE_VALUES)
        elif number == GRAPH_NODES:
            yield from _node_tensors(_message(value), depth)


def _node_tensors(node: memoryview, depth: int) -> Iterator[memoryview]:
    for number, attribute in _fields(node):
        if number != NODE_ATTRIBUTES:
            continue
        for inner, value in _fields(_message(attribute)):
            if inner in (ATTRIBUTE_TENSOR, ATTRIBUTE_TENSORS):
                yield _message(value)
            elif inner in (ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS):
                yield from _graph_tensors(_message(value), depth + 1)


def _nonfinite(tensor: memoryview) -> str | None:
    fields = list(_fields(tensor))
    dtype = next((v for n, v in fields if n == TENSOR_TYPE and isinstance(v, int)), None)
    if dtype not in FLOAT_DTYPES:
        return None
    for number, value in fields:
        if isinstance(value, int) or number not in (TENSOR_RAW, TENSOR_FLOATS, TENSOR_DOUBLES):
            continue
        values = _as_floats(value, "<f8" if number == TENSOR_DOUBLES else
                            "<f4" if number == TENSOR_FLOATS else FLOAT_DTYPES[dtype])
        if not np.isfinite(values).all():
            name = next((bytes(v).decode("utf-8", "replace") for n, v in fields
                         if n == TENSOR_NAME and not isinstance(v, int)), "?")
            kind = "NaN" if np.isnan(values).any() else "inf"
            return f"weight {name!r} holds {kind}"
    return None


def _as_floats(raw: memoryview, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":  # the top half of a float32
        bits = np.frombuffer(raw, dtype="<u2", count=len(raw) // 2).astype(np.uint32) << 16
        return bits.view(np.float32)
    size = np.dtype(dtype).itemsize
    return np.frombuffer(raw, dtype=dtype, count=len(raw) // size)


def _message(value) -> memoryview:
    """A length-delimited field's bytes; a varint where a message belongs is malformed."""
    if isinstance(value, int):
        raise Malformed
    return value


def _int(value) -> int:
    if not isinstance(value, int):
        raise Malformed
    return value


def _text(value) -> str:
    return bytes(_message(value)).decode("utf-8")


def _signed(value: int) -> int:
    """A varint read as int64 (two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(value) -> list[int]:
    """A repeated integer field: one varint, or a packed run of them."""
    if isinstance(value, int):
        return [value]
    out, pos = [], 0
    while pos < len(value):
        number, pos = _varint(value, pos)
        out.append(number)
    return out


def _packed_floats(value) -> np.ndarray:
    """A repeated float field: one fixed32 (4 bytes) or a packed run of them."""
    raw = _message(value)
    if len(raw) % 4:
        raise Malformed
    return np.frombuffer(raw, "<f4").astype(np.float64)


def _fields(message: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of a protobuf message: an int for varints, bytes for the rest."""
    pos, end = 0, len(message)
    while pos < end:
        key, pos = _varint(message, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire in (1, 5):  # fixed 64 or 32 bits
            size = 8 if wire == 1 else 4
            value, pos = message[pos:pos + size], pos + size
        elif wire == 2:  # length-delimited: a sub-message, string, bytes or packed numbers
            size, pos = _varint(message, pos)
            value, pos = message[pos:pos + size], pos + size
        else:  # groups (3, 4) are not used by onnx; 6, 7 do not exist
            raise Malformed
        if pos > end:
            raise Malformed
        yield key >> 3, value


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 64:
        if pos >= len(data):
            raise Malformed
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise Malformed
