"""What every export form shares: the report, golden contexts, the metadata seal, an in-memory session."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from nametool.runtime.errors import NametoolError
from nametool.runtime.model import NameModel, OnnxruntimeBackend
from nametool.runtime.onnxfile import weight_digests
from nametool.runtime.schema import METADATA_KEY, Integrity, ModelMeta, Quantization, metadata_digests
from nametool.runtime.windows import build_windows
from nametool.train.checkpoint import Checkpoint

GOLDEN_CONTEXTS = 8  # prefixes of validation names
MAX_COVERAGE_ROWS = 255  # rows putting every character at every context position (vocabularies up to 256)


class ExportMismatch(NametoolError):
    """The written file does not reproduce PyTorch's distributions."""


@dataclass(frozen=True)
class ExportReport:
    path: Path
    contexts_checked: int
    max_abs_diff: float | None  # fp32: vs PyTorch
    quantization: Quantization | None  # int8: drift from fp32
    size_bytes: int
    fp32_size_bytes: int


def set_metadata(proto, meta: ModelMeta) -> None:
    """The file's one metadata entry (``verify`` names any other as added since export)."""
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()


def validation_contexts(ckpt: Checkpoint) -> np.ndarray:
    contexts, _ = build_windows(ckpt.splits["val"], ckpt.meta.vocab, ckpt.meta.model.context_size)
    return np.unique(contexts, axis=0)


def golden_contexts(val_names: list[str], chars: tuple[str, ...], context_size: int,
                    count: int = GOLDEN_CONTEXTS) -> tuple[str, ...]:
    """The empty context, prefixes of a few validation names, and full contexts that put every
    character at every position (row r holds ``chars[(r + i) % len(chars)]`` at position i), so
    that every row of the embedding table and of each position's weights takes part."""
    picked = [""]
    for i, name in enumerate(val_names[: count - 1]):
        picked.append(name[: 1 + i % len(name)])
    for r in range(min(len(chars), MAX_COVERAGE_ROWS)):
        picked.append("".join(chars[(r + i) % len(chars)] for i in range(context_size)))
    return tuple(picked)


def seal(proto, meta: ModelMeta) -> ModelMeta:
    """Store ``meta`` in the file with the digests of its weights, graph and metadata sections."""
    set_metadata(proto, meta)
    tensors, graph = weight_digests(proto.SerializeToString())
    meta = replace(meta, integrity=Integrity(tensors, graph, metadata_digests(meta.to_json())))
    set_metadata(proto, meta)
    return meta


def session_model(proto, meta: ModelMeta) -> NameModel:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # an exact file's embedding tables are kept for reading, unused by the graph
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return NameModel(OnnxruntimeBackend(session), meta, Path("<memory>"))
