"""Load a nametool ``.onnx`` file and use it: logits, next-char distributions, names."""

from __future__ import annotations

import os
from typing import NamedTuple
from pathlib import Path

import numpy as np

from nametool.runtime import generation
from nametool.runtime.errors import ModelFileError, RequestError
from nametool.runtime.onnxfile import nonfinite_weights, read_onnx
from nametool.runtime.sampling import next_char_probs
from nametool.runtime.schema import DEFAULT_COUNT, INPUT_NAME, METADATA_KEY, OUTPUT_NAME, ModelMeta, unprintable
from nametool.runtime.text import normalise

DEFAULT_MODEL_FILE = "default.onnx"
ENGINES = ("auto", "onnxruntime", "numpy")
# Most rows one model call takes; a larger batch is split (rows are independent: the same
# logits). The folded first layer gathers a (rows, context_size, hidden) tensor, fast while it
# stays in cache. From bench/fold.py on the 2-core Xeon (AMX, AVX-512), default model, one thread:
# onnxruntime folded peaked at 64 rows (247,000 rows/s against 195,000 to 201,000 at 128 to 1,024),
# numpy folded at 256 (241,000 against 182,000 at 64 and 162,000 at 1,024). onnxruntime plain:
# generating 4,096 names at batch 4,096 in calls of 512 rows gave 396,000 names/s on the lecture's
# file against 355,000 in whole calls (391,000 at 1,024, 369,000 at 2,048), and 48,600 against
# 41,800 on the default's plain form (medians of 25, interleaved; the same Xeon, not timed on AVX2).
# numpy runs a plain file folded (numpy_engine._fold_first_layers); its plain entry serves files
# it cannot fold.
ROWS_PER_CALL = {("onnxruntime", "folded"): 64, ("onnxruntime", "plain"): 512,
                 ("numpy", "folded"): 256, ("numpy", "plain"): 1 << 30}
# onnxruntime's float32 Gemm gives a call of one row (or three) other logits than a longer call
# (up to 3.8e-6 for the default model, on the AVX-512 Xeon and on emulated AVX2 alike): its
# kernels take rows in pairs. Calls are padded to a multiple of this, so a row's logits do not
# depend on how many rows share its call (tests/test_fold.py).
ORT_ROW_MULTIPLE = 4
PROBE_ROWS = 256  # contexts run once on load: enough to use every id of any but a huge vocabulary


def bundled_model_path(name: str = DEFAULT_MODEL_FILE) -> Path:
    """Path of a model file shipped in the ``nametool.models`` package."""
    return _models_folder() / name


def _models_folder() -> Path:
    """Where the bundled models are installed (a plain folder: importlib.resources costs ~13 ms of start-up)."""
    import nametool.models

    return Path(nametool.models.__file__).parent


def bundled_models() -> dict[str, Path]:
    """Every model shipped with nametool, by name (the file name without ``.onnx``)."""
    folder = _models_folder()
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


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror or exc})") from None


def available_cores() -> int:
    """CPUs this process may run on (its affinity), which can be fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def onnxruntime_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def choose_engine(engine: str, *, large: bool = True) -> str:
    """``auto``: onnxruntime for ``large`` work where it is installed, else numpy, which starts
    without onnxruntime's import and session (most of a small request's time); ``NameModel.load``
    also takes numpy for an exact file, whose table lookups run faster there. On exact files
    the engines give the same integers; on float files the same distributions within 1.1e-6,
    so the same seed gives the same names (tested on the bundled models)."""
    if engine not in ENGINES:
        raise RequestError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "onnxruntime" if large and onnxruntime_installed() else "numpy"
    if engine == "onnxruntime" and not onnxruntime_installed():
        raise RequestError("--engine onnxruntime: onnxruntime is not installed here "
                           "(pip install onnxruntime, where a wheel exists; or --engine numpy)")
    return engine


class OnnxruntimeBackend:
    """An onnxruntime session on the file's bytes: the graph cannot make us read other files."""

    name = "onnxruntime"

    def __init__(self, session):
        self._session = session

    @classmethod
    def open(cls, data: bytes, path: Path, threads: int | None) -> OnnxruntimeBackend:
        """Settings from bench/run.py on a 2-core CPU: one intra-op thread per available core
        (batched generation nearly doubles on 2 cores, batch 1 is unchanged); graph optimisation
        level and memory arena left at onnxruntime's defaults (switching either made no difference).
        """
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = available_cores() if threads is None else threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # fatal only: a bad file is reported by us, once
        try:
            # no fallback: on failure onnxruntime would print an "EP Error" banner to stdout and retry
            session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"], enable_fallback=0)
        except Exception as exc:  # onnxruntime raises several unrelated types for bad files
            raise ModelFileError(f"{path}: not a loadable ONNX model ({_first_line(exc)})") from None
        return cls(session)

    def run(self, contexts: np.ndarray) -> np.ndarray:
        rows = len(contexts)
        padded = -(-rows // ORT_ROW_MULTIPLE) * ORT_ROW_MULTIPLE
        if padded != rows:  # repeat the last row: its logits are computed again, then dropped
            contexts = np.concatenate([contexts, np.repeat(contexts[-1:], padded - rows, axis=0)])
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: contexts})[0][:rows]

    def first_layer(self, meta: ModelMeta) -> str:
        """The form of the first layer this engine runs: the file's."""
        return meta.first_layer

    def metadata(self, path: Path) -> dict[str, str]:
        try:
            return self._session.get_modelmeta().custom_metadata_map
        except Exception as exc:  # e.g. metadata bytes that are not UTF-8
            raise ModelFileError(f"{path}: unreadable metadata ({_first_line(exc)})") from None

    def signature(self, path: Path) -> tuple[list, list]:
        try:  # onnxruntime decodes names and symbolic dims as UTF-8 only when asked
            inputs = [_Arg(i.name, i.type, list(i.shape)) for i in self._session.get_inputs()]
            outputs = [_Arg(o.name, o.type, list(o.shape)) for o in self._session.get_outputs()]
        except Exception as exc:
            raise ModelFileError(f"{path}: unreadable graph inputs or outputs ({_first_line(exc)})") from None
        return inputs, outputs


class NumpyBackend:
    """The graph read by our own protobuf reader and evaluated with numpy (``numpy_engine``)."""

    name = "numpy"

    def __init__(self, data: bytes, path: Path):
        from nametool.runtime.numpy_engine import NumpyGraph

        try:
            self._file = read_onnx(data)
            self._graph = NumpyGraph(self._file)
        except ModelFileError as exc:
            raise type(exc)(f"{path}: {exc}") from None

    def run(self, contexts: np.ndarray) -> np.ndarray:
        return self._graph.run(contexts)

    def first_layer(self, meta: ModelMeta) -> str:
        """The form of the first layer this engine runs: folded, also for a plain file
        (``numpy_engine._fold_first_layers``)."""
        return "folded" if self._graph.folded else meta.first_layer

    def metadata(self, path: Path) -> dict[str, str]:
        return self._file.metadata

    def signature(self, path: Path) -> tuple[list, list]:
        return ([_Arg(i.name, i.type, list(i.shape)) for i in self._file.inputs],
                [_Arg(o.name, o.type, list(o.shape)) for o in self._file.outputs])


def _exact_form(data: bytes) -> bool:
    """Whether the file's metadata says it is in the exact form (False for anything unreadable:
    loading it reports why)."""
    try:
        return ModelMeta.from_json(read_onnx(data).metadata.get(METADATA_KEY, "")).exact is not None
    except ModelFileError:
        return False


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _read_meta(metadata: dict[str, str], path: Path) -> ModelMeta:
    if METADATA_KEY not in metadata:
        raise ModelFileError(f"{path}: an ONNX file without nametool metadata (key {METADATA_KEY!r})")
    try:
        return ModelMeta.from_json(metadata[METADATA_KEY])
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None


class NameModel:
    """A character-level name model run by onnxruntime or numpy. Build with :meth:`load`."""

    def __init__(self, backend, meta: ModelMeta, path: Path, data: bytes | None = None):
        self._backend = backend
        self.meta = meta
        self.path = path
        self.data = data  # the file's bytes, for verify's digests
        self.vocab = meta.vocab
        self.context_size = meta.model.context_size
        self.rows_per_call = ROWS_PER_CALL[backend.name, backend.first_layer(meta)]
        self._exact = None
        if meta.exact is not None:
            from nametool.runtime.exact import exact_tables

            try:
                self._exact = exact_tables(meta)
            except ModelFileError as exc:
                raise ModelFileError(f"{path}: {exc}") from None

    @property
    def form(self) -> str:
        """``exact`` (integers: the same names on every device) or ``float``."""
        return self.meta.form

    @property
    def sampling_logits(self):
        """What generation samples from: the graph's integers for an exact file, else the logits."""
        return self.logits if self._exact is None else self.integer_logits

    @property
    def engine(self) -> str:
        """What computes the logits: ``onnxruntime`` or ``numpy``."""
        return self._backend.name

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, threads: int | None = None,
             engine: str = "auto", large: bool = True) -> NameModel:
        """Open a model file, or a bundled model by name (default: ``default``), and check it is one of ours.

        ``engine``: ``onnxruntime``, ``numpy`` (no onnxruntime needed), or ``auto``: onnxruntime
        where it is installed, unless ``large`` is False (a few calls: numpy starts faster).
        ``threads`` sets onnxruntime's intra-op threads.
        """
        asked, engine = engine, choose_engine(engine, large=large)
        path = resolve_model(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: is not a file")
        data = _read(path)
        if asked == "auto" and engine == "onnxruntime" and _exact_form(data):
            engine = "numpy"  # an exact graph's table lookups run faster there (docs/benchmarks.md)
        backend = OnnxruntimeBackend.open(data, path, threads) if engine == "onnxruntime" else None
        if backend is None:
            from nametool.runtime.numpy_engine import UnsupportedOperator

            try:
                backend = NumpyBackend(data, path)
            except UnsupportedOperator:
                if asked != "auto" or not onnxruntime_installed():
                    raise
                # auto means numpy where it can run the file: one exported by an older nametool
                # (dynamic int8 operators) runs on onnxruntime instead
                backend = OnnxruntimeBackend.open(data, path, threads)
        meta = _read_meta(backend.metadata(path), path)
        _check_graph(*backend.signature(path), meta, path)
        _check_printable(meta, path)
        try:
            bad = nonfinite_weights(data)
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
        if bad:
            raise ModelFileError(f"{path}: {bad}; refusing to sample from it")
        model = cls(backend, meta, path, data)
        if meta.exact is not None:
            model._check_exact()
        model._probe()
        return model

    def _check_exact(self) -> None:
        from nametool.runtime.exact import check_exact

        try:
            check_exact(read_onnx(self.data), self.meta)
        except ModelFileError as exc:
            raise ModelFileError(f"{self.path}: {exc}") from None

    def logits(self, contexts: np.ndarray) -> np.ndarray:
        """Next-character logits for a batch of encoded contexts.

        ``contexts`` is ``(batch, context_size)`` int64; returns ``(batch, vocab)`` float32.
        """
        contexts = self._checked(contexts)
        if self._exact is None:
            return self._run(contexts)
        from nametool.runtime.exact import dequantized_logits

        return dequantized_logits(self._run(contexts), self._exact[0]).astype(np.float32)

    def integer_logits(self, contexts: np.ndarray) -> np.ndarray:
        """An exact file's member outputs for encoded contexts: ``(batch, members, vocab)`` float32
        holding integers, the input of ``runtime/exact.py``'s sampler."""
        if self._exact is None:
            raise RequestError(f"{self.path} is a float-form file: it has no integer logits")
        return self._run(self._checked(contexts))

    def _checked(self, contexts: np.ndarray) -> np.ndarray:
        contexts = np.ascontiguousarray(contexts, dtype=np.int64)
        if contexts.ndim != 2 or contexts.shape[1] != self.context_size:
            raise RequestError(f"contexts must be (batch, {self.context_size}) ids, not of shape {contexts.shape}")
        # negative ids wrap round to huge ones here: one comparison refuses both (a folded table would
        # otherwise read an out-of-range id from the next position's rows)
        if contexts.size and contexts.view(np.uint64).max() >= len(self.vocab):
            raise RequestError(f"context ids must lie in 0..{len(self.vocab) - 1}")
        return contexts

    def _run(self, contexts: np.ndarray) -> np.ndarray:
        step = self.rows_per_call
        try:
            if len(contexts) <= step:
                out = self._backend.run(contexts)
            else:  # rows are independent: the same logits, with the call's working set kept in cache
                out = np.concatenate([self._backend.run(contexts[i:i + step]) for i in range(0, len(contexts), step)])
        except Exception as exc:  # onnxruntime's own types: a damaged graph can load, then fail here
            raise ModelFileError(f"{self.path}: the model failed to run ({_first_line(exc)})") from None
        expected = (len(contexts), len(self.vocab)) if self._exact is None else \
            (len(contexts), self.meta.model.members, len(self.vocab))
        if out.shape != expected:  # the sampler indexes by these
            raise ModelFileError(f"{self.path}: the model gave logits of shape {out.shape} for "
                                 f"{len(contexts)} contexts of a {len(self.vocab)}-id vocabulary")
        return out

    def _probe(self) -> None:
        """Run the model once on contexts using every id: NaN or inf weights show in the logits.

        The first row is the start of a name; the others hold the ids in order.
        """
        size, ids = self.context_size, np.arange(len(self.vocab), dtype=np.int64)
        ids = ids[: (PROBE_ROWS - 1) * size]
        rows = np.resize(ids, (-(-len(ids) // size), size))  # wraps round to fill the last row
        contexts = np.vstack([np.full((1, size), self.vocab.end_id, dtype=np.int64), rows])
        if not np.isfinite(self.logits(contexts)).all():
            raise ModelFileError(f"{self.path}: the model gives NaN or infinite logits; refusing to sample from it")

    def embeddings(self, member: int = 0) -> np.ndarray:
        """The ``(vocab, embed_dim)`` embedding table of one member, rows in id order (end token first)."""
        from nametool.runtime.embeddings import embedding_tables

        tables = embedding_tables(self.data, len(self.vocab))
        if not 0 <= member < len(tables):
            raise RequestError(f"member {member} is out of range: this model has {len(tables)} "
                               f"(0 to {len(tables) - 1})")
        return tables[member]

    def next_char_distribution(self, text: str = "", *, temperature: float = 1.0) -> dict[str, float]:
        """P(next character | ``text``), most likely first. The end token means "the name ends"."""
        if self._exact is None:
            return next_char_distribution(self.logits, self.meta, text, temperature=temperature)
        from nametool.runtime.exact import exact_probs

        generation.check_temperature(temperature)
        mass = exact_probs(self.integer_logits(encode_contexts(self.meta, [text])), *self._exact,
                           temperature=temperature)[0]
        order = np.argsort(-mass, kind="stable")
        itos, total = self.vocab.itos(), int(mass.sum())
        return {itos[i]: int(mass[i]) / total for i in order}

    def generate(self, count: int = DEFAULT_COUNT, *, seed: int | None = None, **options) -> list[str]:
        """Sample ``count`` names.

        Options (all keyword, unset ones take the model's defaults): ``temperature``
        (0 is greedy), ``top_k``, ``top_p``, ``min_p``, ``min_len``, ``max_len``, ``prefix``,
        ``suffix``, ``contains``, ``exclude`` (a tuple of words no name may contain),
        ``unique``, ``novel`` (no name of the training data), ``batch_size``.
        """
        request = generation.Request(count=count, **options)
        return generation.generate(self.sampling_logits, self.meta, request, generation.make_rng(seed))

    def score(self, names: list[str]) -> list[generation.Score]:
        """Log-likelihood, per-character probabilities and perplexity of each (normalised) name."""
        return generation.score(self.logits, self.meta, [normalise(name) for name in names])


def encode_contexts(meta: ModelMeta, texts) -> np.ndarray:
    """``(len(texts), context_size)``: each text's last characters, left-padded with the end id."""
    size, rows = meta.model.context_size, []
    for text in texts:
        try:
            ids = [meta.vocab.end_id] * size + meta.vocab.encode(text)
        except ValueError as exc:
            raise RequestError(f"context {text!r}: {exc}") from None
        rows.append(ids[len(ids) - size:])
    return np.array(rows, dtype=np.int64).reshape(len(rows), size)


def next_char_distribution(logits_fn, meta: ModelMeta, text: str = "", *, temperature: float = 1.0):
    """P(next character | ``text``) under any logits function, most likely first."""
    generation.check_temperature(temperature)
    probs = next_char_probs(logits_fn(encode_contexts(meta, [text])), temperature)[0]
    order = np.argsort(-probs, kind="stable")
    itos = meta.vocab.itos()
    return {itos[i]: float(probs[i]) for i in order}


def _check_printable(meta: ModelMeta, path: Path) -> None:
    """Names are printed one per line: no control characters, separators or lone surrogates."""
    bad = unprintable((*meta.vocab.chars, meta.vocab.end_token))
    if bad:
        raise ModelFileError(f"{path}: vocabulary holds unprintable characters {', '.join(map(repr, bad))}")


class _Arg(NamedTuple):
    name: str
    type: str
    shape: list


def _check_graph(inputs: list[_Arg], outputs: list[_Arg], meta: ModelMeta, path: Path) -> None:
    """The metadata must describe this graph: names, dtypes and widths agree."""
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
    if meta.exact is not None:  # each member's integers: (batch, members, vocab)
        if len(out.shape) != 3 or out.shape[1:] != [meta.model.members, len(meta.vocab)]:
            raise ModelFileError(f"{path}: graph output shape {out.shape} disagrees with the exact form's "
                                 f"(batch, {meta.model.members}, {len(meta.vocab)})")
        return
    if len(out.shape) != 2 or out.shape[1] != len(meta.vocab):
        raise ModelFileError(
            f"{path}: graph output shape {out.shape} disagrees with the vocabulary size {len(meta.vocab)}"
        )
