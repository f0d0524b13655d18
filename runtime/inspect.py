"""Looking at a model file: a summary for people and scripts, the built-in self-test, and a
scan of the weights for NaN and inf (the runtime has no onnx package, so it reads the few
protobuf fields it needs itself)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from nametool.runtime.errors import ModelFileError
from nametool.runtime.sampling import UnusableLogits, next_char_probs

if TYPE_CHECKING:  # model.py imports this module to scan weights on load
    from nametool.runtime.model import NameModel



@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    contexts: int
    max_deviation: float
    tolerance: float
    message: str


def verify(model: NameModel) -> VerifyReport:
    """Recompute the golden next-char distributions stored at export and compare."""
    golden = model.meta.golden
    if golden is None:
        return VerifyReport(False, 0, float("nan"), float("nan"), "the file carries no golden distributions")
    widths = sorted({len(row) for row in golden.probs})
    if len(golden.probs) != len(golden.contexts) or widths != [len(model.vocab)]:
        return VerifyReport(False, 0, float("nan"), golden.tolerance,
                            f"golden table has {len(golden.probs)} rows of widths {widths}, expected "
                            f"{len(golden.contexts)} rows of {len(model.vocab)}")
    from nametool.runtime.model import encode_contexts  # here: model.py imports this module

    stored = np.array(golden.probs, dtype=np.float64)  # (contexts, vocab)
    try:
        encoded = encode_contexts(model.meta, golden.contexts)
    except Exception as exc:  # a golden context outside the vocabulary: tampered metadata
        return VerifyReport(False, 0, float("nan"), golden.tolerance, str(exc))
    try:
        probs = next_char_probs(model.logits(encoded))
    except UnusableLogits as exc:
        return VerifyReport(False, len(golden.contexts), float("nan"), golden.tolerance, str(exc))
    deviation = float(np.abs(probs - stored).max())
    ok = bool(deviation <= golden.tolerance)  # NaN fails
    verdict = "within" if ok else "exceeds"
    message = (f"{len(golden.contexts)} golden contexts, max |dp| = {deviation:.2e} "
               f"{verdict} tolerance {golden.tolerance:.0e}")
    return VerifyReport(ok, len(golden.contexts), deviation, golden.tolerance, message)


def summary(model: NameModel) -> dict:
    """Everything ``nametool-run info`` shows, as plain JSON-ready values."""
    meta = model.meta
    prov = asdict(meta.provenance)
    notice = prov.pop("data_notice")
    return {
        "path": str(model.path),
        "file_bytes": model.path.stat().st_size,
        "schema_version": meta.schema_version,
        "vocab": {"chars": "".join(meta.vocab.chars), "end_token": meta.vocab.end_token, "size": len(meta.vocab)},
        "model": {**asdict(meta.model), "parameters": meta.model.parameter_count(len(meta.vocab))},
        "sampling": asdict(meta.sampling),
        "provenance": prov,
        "data_notice": notice,
        "known_names": None if meta.known_names is None else meta.known_names.count,
        "golden_contexts": None if meta.golden is None else len(meta.golden.contexts),
        "quantization": None if meta.quantization is None else asdict(meta.quantization),
    }


# ONNX protobuf field numbers (onnx.proto3) on the paths to every stored tensor.
MODEL_GRAPH, MODEL_FUNCTIONS, FUNCTION_NODES = 7, 25, 7
GRAPH_NODES, GRAPH_INITIALIZERS, GRAPH_SPARSE_INITIALIZERS, SPARSE_VALUES = 1, 5, 15, 1
NODE_ATTRIBUTES, ATTRIBUTE_TENSOR, ATTRIBUTE_GRAPH, ATTRIBUTE_TENSORS, ATTRIBUTE_GRAPHS = 5, 5, 6, 10, 11
TENSOR_TYPE, TENSOR_FLOATS, TENSOR_NAME, TENSOR_RAW, TENSOR_DOUBLES = 2, 4, 8, 9, 10
FLOAT_DTYPES = {1: "<f4", 10: "<f2", 11: "<f8", 16: "bfloat16"}  # onnx TensorProto.DataType
MAX_NESTING = 32  # subgraphs inside subgraphs; onnxruntime itself stops at a similar depth


class _Malformed(Exception):
    pass


def nonfinite_weights(data: bytes) -> str | None:
    """Name the first stored float tensor of an ONNX file holding NaN or inf, or None if all are finite.

    Raises ModelFileError if the protobuf is malformed on the way to a tensor.
    """
    try:
        for tensor in _model_tensors(memoryview(data)):
            found = _nonfinite(tensor)
            if found:
                return found
    except _Malformed:
        raise ModelFileError("not a well-formed ONNX file (bad protobuf framing)") from None
    return None


def _model_tensors(model: memoryview) -> Iterator[memoryview]:
    for number, value in _fields(model):
        if number == MODEL_GRAPH:
            yield from _graph_tensors(value, 0)
        elif number == MODEL_FUNCTIONS:
            for inner, node in _fields(value):
                if inner == FUNCTION_NODES:
                    yield from _node_tensors(node, 0)


def _graph_tensors(graph: memoryview, depth: int) -> Iterator[memoryview]:
    if depth > MAX_NESTING:
        raise _Malformed
    for number, value in _fields(graph):
        if number == GRAPH_INITIALIZERS:
            yield value
        elif number == GRAPH_SPARSE_INITIALIZERS:
            yield from (v for n, v in _fields(value) if n == SPARSE_VALUES)
        elif number == GRAPH_NODES:
            yield from _node_tensors(value, depth)


def _node_tensors(node: memoryview, depth: int) -> Iterator[memoryview]:
    for number, attribute in _fields(node):
        if number != NODE_ATTRIBUTES:
            continue
        for inner, value in _fields(attribute):
            if inner in (ATTRIBUTE_TENSOR, ATTRIBUTE_TENSORS):
                yield value
            elif inner in (ATTRIBUTE_GRAPH, ATTRIBUTE_GRAPHS):
                yield from _graph_tensors(value, depth + 1)


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
            raise _Malformed
        if pos > end:
            raise _Malformed
        yield key >> 3, value


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 64:
        if pos >= len(data):
            raise _Malformed
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise _Malformed
