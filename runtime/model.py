"""Load a nametool ``.onnx`` file and use it: logits, next-char distributions, names."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np

from nametool.runtime import generate as engine
from nametool.runtime.errors import ModelFileError, RequestError
from nametool.runtime.sampling import next_char_probs
from nametool.runtime.schema import INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelMeta
from nametool.runtime.text import normalise

DEFAULT_MODEL = "default.onnx"


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a model file shipped in the ``nametool.models`` package."""
    return Path(str(resources.files("nametool.models").joinpath(name)))


def bundled_models() -> dict[str, Path]:
    """Every model shipped with nametool, by name (the file name without ``.onnx``)."""
    folder = Path(str(resources.files("nametool.models")))
    return {path.stem: path for path in sorted(folder.glob("*.onnx"), key=lambda p: p.stem)}


def resolve_model(spec: str | os.PathLike | None) -> Path:
    """A model file from a path, a bundled model's name, or nothing (the default model)."""
    if spec is None:
        return bundled_model_path()
    path = Path(spec)
    if path.exists():
        return path
    bundled = bundled_models()
    name = path.name[:-5] if path.name.endswith(".onnx") else path.name
    if str(spec) == path.name and name in bundled:
        return bundled[name]
    raise ModelFileError(f"{spec}: no such model file, nor a bundled model (bundled: {', '.join(bundled)})")


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: a bad file is reported by us, once
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated types for bad files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a loadable ONNX model ({first_line[:200]})") from None


class NameModel:
    """A character-level name model backed by onnxruntime. Build with :meth:`load`."""

    def __init__(self, session, meta: ModelMeta, path: Path):
        self._session = session
        self.meta = meta
        self.path = path
        self.vocab = meta.vocab
        self.context_size = meta.model.context_size

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, threads: int = 1) -> NameModel:
        """Open a model file, or a bundled model by name (default: ``default``), and check it is one of ours."""
        path = resolve_model(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: is not a file")
        session = _session(path, threads)
        metadata = session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in metadata:
            raise ModelFileError(f"{path}: an ONNX file without nametool metadata (key {METADATA_KEY!r})")
        meta = ModelMeta.from_json(metadata[METADATA_KEY])
        _check_graph(session, meta, path)
        return cls(session, meta, path)

    def logits(self, contexts: np.ndarray) -> np.ndarray:
        """Next-character logits for a batch of encoded contexts.

        ``contexts`` is ``(batch, context_size)`` int64; returns ``(batch, vocab)`` float32.
        """
        contexts = np.ascontiguousarray(contexts, dtype=np.int64)
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: contexts})[0]

    def encode_context(self, text: str) -> np.ndarray:
        """The model's input for "what follows ``text``": its last characters, left-padded."""
        return encode_context(self.meta, text)

    def next_char_distribution(self, text: str = "", *, temperature: float = 1.0) -> dict[str, float]:
        """P(next character | ``text``), most likely first. The end token means "the name ends"."""
        return next_char_distribution(self.logits, self.meta, text, temperature=temperature)

    def generate(self, count: int = 10, *, seed: int | None = None, **options) -> list[str]:
        """Sample ``count`` names.

        Options (all keyword, unset ones take the model's defaults): ``temperature``
        (0 is greedy), ``top_k``, ``top_p``, ``min_len``, ``max_len``, ``prefix``,
        ``unique``, ``novel`` (no name of the training data), ``batch_size``.
        """
        request = engine.Request(count=count, **options)
        return engine.generate(self.logits, self.meta, request, np.random.default_rng(seed))

    def score(self, names: list[str]) -> list[engine.Score]:
        """Log-likelihood, per-character probabilities and perplexity of each (normalised) name."""
        return engine.score(self.logits, self.meta, [normalise(name) for name in names])


def encode_context(meta: ModelMeta, text: str) -> np.ndarray:
    """``(1, context_size)`` ids of the last characters of ``text``, left-padded with the end id."""
    try:
        ids = meta.vocab.encode(text)
    except ValueError as exc:
        raise RequestError(f"context {text!r}: {exc}") from None
    size = meta.model.context_size
    ids = [meta.vocab.end_id] * size + ids
    return np.array([ids[len(ids) - size:]], dtype=np.int64)


def next_char_distribution(logits_fn, meta: ModelMeta, text: str = "", *, temperature: float = 1.0):
    """P(next character | ``text``) under any logits function, most likely first."""
    probs = next_char_probs(logits_fn(encode_context(meta, text)), temperature)[0]
    order = np.argsort(-probs, kind="stable")
    itos = meta.vocab.itos()
    return {itos[i]: float(probs[i]) for i in order}


def _check_graph(session, meta: ModelMeta, path: Path) -> None:
    """The metadata must describe this graph: names, dtypes and widths agree."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or [o.name for o in outputs] != [OUTPUT_NAME]:
        raise ModelFileError(
            f"{path}: graph has inputs {[i.name for i in inputs]} and outputs "
            f"{[o.name for o in outputs]}, expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]"
        )
    (inp,), (out,) = inputs, outputs
    if inp.type != "tensor(int64)" or out.type != "tensor(float)":
        raise ModelFileError(f"{path}: graph takes {inp.type} and gives {out.type}, expected int64 and float")
    if len(inp.shape) != 2 or inp.shape[1] != meta.model.context_size:
        raise ModelFileError(
            f"{path}: graph input shape {inp.shape} disagrees with context_size {meta.model.context_size}"
        )
    if len(out.shape) != 2 or out.shape[1] != len(meta.vocab):
        raise ModelFileError(
            f"{path}: graph output shape {out.shape} disagrees with the vocabulary size {len(meta.vocab)}"
        )
