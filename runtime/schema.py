"""The one schema: everything a model file says about itself.

Training writes it into the checkpoint, export copies it into the ONNX file's
metadata under ``METADATA_KEY`` as one JSON value, and the runtime reads it back
and cross-checks it against the graph. Nothing here is stored twice: the
vocabulary size is ``len(vocab)``.
"""

from __future__ import annotations

import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from functools import cache
from typing import Any

from nametool.runtime.errors import ModelFileError
from nametool.runtime.known import KnownNames

SCHEMA_VERSION = 1
ACCEPTED_SCHEMA_VERSIONS = (1,)
METADATA_KEY = "nametool"
INPUT_NAME = "context"
OUTPUT_NAME = "logits"
NORMS = ("none", "layer")
# Bounds on what a file (or a training run) may ask for, so a hostile or mistyped
# value is refused in one line instead of allocating without end.
MAX_NAME_LEN = 256  # characters: longer lines are no names
MAX_CONTEXT_SIZE = MAX_NAME_LEN  # more context than the longest name only adds padding
MAX_LAYERS = 16
MAX_MEMBERS = 16
MAX_PARAMETERS = 100_000_000  # 400 MB of float32; the default model has about 360,000
MAX_SEED = 2**64 - 1  # torch and numpy both take seeds in [0, 2**64)
SEED_RANGE = "0..2**64-1"
END_TOKEN = "."  # the default end token: ends a name and pads the context
# What a generation request asks for unless told (generation.Request, NameModel.generate, the CLIs)
DEFAULT_COUNT = 10
DEFAULT_BATCH_SIZE = 1024
MAX_GOLDEN_TOLERANCE = 1e-3  # a file cannot make its own self-test pass by loosening it
# Unicode categories no name character may have: names are printed one per line.
UNPRINTABLE = ("Cc", "Cs", "Zl", "Zp")  # controls, lone surrogates, line and paragraph separators


def valid_seed(seed: int) -> bool:
    """numpy and torch take seeds in [0, 2**64); numpy refuses others with a traceback."""
    return 0 <= seed <= MAX_SEED


def valid_temperature(temperature: float) -> bool:
    return temperature >= 0 and math.isfinite(temperature)  # NaN fails the first test


def unprintable(chars) -> list[str]:
    """The characters that cannot stand in a name printed one per line."""
    import unicodedata

    return [c for c in chars if unicodedata.category(c) in UNPRINTABLE]


@dataclass(frozen=True)
class Vocab:
    """Characters a model knows. Id 0 is the end token; ``chars[i]`` has id ``i + 1``."""

    chars: tuple[str, ...]
    end_token: str = END_TOKEN

    def __post_init__(self) -> None:
        if any(len(c) != 1 for c in self.chars) or len(self.end_token) != 1:
            raise ModelFileError("vocab: every character and the end token must be one character")
        if len(set(self.chars)) != len(self.chars):
            raise ModelFileError("vocab: characters repeat")
        if self.end_token in self.chars:
            raise ModelFileError(f"vocab: end token {self.end_token!r} is also a name character")
        if not self.chars:
            raise ModelFileError("vocab: no characters")

    def __len__(self) -> int:
        return len(self.chars) + 1

    @property
    def end_id(self) -> int:
        return 0

    def itos(self) -> tuple[str, ...]:
        """Characters by id, the end token first."""
        return (self.end_token, *self.chars)

    def stoi(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.itos())}

    def encode(self, text: str) -> list[int]:
        table = self.stoi()
        missing = sorted({c for c in text if c not in table or c == self.end_token})
        if missing:
            shown = ", ".join(repr(c) for c in missing)
            raise ValueError(f"{shown} not in the vocabulary ({self.describe()})")
        return [table[c] for c in text]

    def decode(self, ids) -> str:
        itos = self.itos()
        return "".join(itos[i] for i in ids)

    def describe(self) -> str:
        """A short human form such as ``a-z, '.'``."""
        chars = "".join(self.chars)
        if chars == "abcdefghijklmnopqrstuvwxyz":
            chars = "a-z"
        elif len(chars) > 40:
            chars = chars[:40] + "..."
        return f"{chars}, end {self.end_token!r}"


@dataclass(frozen=True)
class ModelConfig:
    """The network's shape (the vocabulary size comes from the vocab)."""

    context_size: int
    embed_dim: int
    hidden: tuple[int, ...]
    norm: str = "none"  # "layer": LayerNorm between each hidden Linear and its tanh
    members: int = 1  # MLPs of this shape whose next-character distributions are averaged

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ModelFileError(f"model.norm {self.norm!r} is not one of {', '.join(NORMS)}")
        if not _is_int(self.members) or not 1 <= self.members <= MAX_MEMBERS:
            raise ModelFileError(f"model.members {self.members!r} must be an integer from 1 to {MAX_MEMBERS}")
        for name in ("context_size", "embed_dim"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise ModelFileError(f"model.{name} {getattr(self, name)!r} must be a positive integer")
        if self.context_size > MAX_CONTEXT_SIZE:
            raise ModelFileError(f"model.context_size {self.context_size} is above the limit {MAX_CONTEXT_SIZE}")
        if not self.hidden or any(not _is_int(h) or h < 1 for h in self.hidden):
            raise ModelFileError(f"model.hidden {self.hidden!r} must be one or more positive integers")
        if len(self.hidden) > MAX_LAYERS:
            raise ModelFileError(f"model.hidden has {len(self.hidden)} layers, above the limit {MAX_LAYERS}")
        parameters = self.parameter_count(1)
        if parameters > MAX_PARAMETERS:
            raise ModelFileError(f"model: {parameters:,} parameters or more, above the limit {MAX_PARAMETERS:,}")

    def parameter_count(self, vocab_size: int) -> int:
        """Embedding, every hidden layer and the output layer, weights and biases, of every member."""
        widths = [self.context_size * self.embed_dim, *self.hidden, vocab_size]
        linear = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
        norm = 2 * sum(self.hidden) if self.norm == "layer" else 0
        return self.members * (vocab_size * self.embed_dim + linear + norm)

    def describe(self) -> str:
        """One line for people: ``context 10, 32-d, hidden 512, layer norm, 2 members``."""
        parts = [f"context {self.context_size}", f"{self.embed_dim}-d", f"hidden {','.join(map(str, self.hidden))}"]
        if self.norm == "layer":
            parts.append("layer norm")
        if self.members > 1:
            parts.append(f"{self.members} members averaged")
        return ", ".join(parts)


@dataclass(frozen=True)
class SamplingDefaults:
    """How the runtime samples when the user does not say: the training length range."""

    temperature: float = 1.0
    min_len: int = 1
    max_len: int = 32

    def __post_init__(self) -> None:
        if not valid_temperature(self.temperature):
            raise ModelFileError("sampling.temperature must be a finite number >= 0")
        if not 1 <= self.min_len <= self.max_len:
            raise ModelFileError("sampling: need 1 <= min_len <= max_len")
        if self.max_len > MAX_NAME_LEN:
            raise ModelFileError(f"sampling.max_len {self.max_len} is above the limit {MAX_NAME_LEN}")


@dataclass(frozen=True)
class Provenance:
    """Where the weights came from. Losses are nats per character."""

    dataset: str
    dataset_sha256: str
    name_count: int
    seed: int
    steps: int
    nametool_version: str
    train_loss: float | None = None
    val_loss: float | None = None
    test_loss: float | None = None
    train_seconds: float | None = None
    torch_version: str | None = None
    onnx_version: str | None = None  # set by export
    created: str | None = None  # when training finished
    exported: str | None = None  # when the .onnx file was written
    data_notice: str | None = None  # credits and licences of the training data
    teacher: str | None = None  # the checkpoint distilled from (its file name), if any

    def __post_init__(self) -> None:
        if not valid_seed(self.seed):
            raise ModelFileError(f"provenance.seed {self.seed} is outside {SEED_RANGE}")


@dataclass(frozen=True)
class Golden:
    """A built-in self-test: next-char distributions this file must reproduce.

    ``probs[i]`` is P(next id | ``contexts[i]``) over the whole vocabulary, as
    computed at export; ``nametool-run verify`` recomputes them.
    """

    contexts: tuple[str, ...]
    probs: tuple[tuple[float, ...], ...]
    tolerance: float

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance <= MAX_GOLDEN_TOLERANCE:
            raise ModelFileError(f"golden.tolerance {self.tolerance} is outside [0, {MAX_GOLDEN_TOLERANCE}]")


@dataclass(frozen=True)
class Quantization:
    """How far an int8 file drifts from the fp32 model it came from, on the validation contexts."""

    scheme: str  # "int8-dynamic": onnxruntime dynamic quantization of the weights
    mean_kl: float  # mean KL(fp32 || int8) of next-char distributions, nats
    val_loss_fp32: float  # nats/char
    val_loss: float  # nats/char, this file
    max_mean_kl: float  # the thresholds it was accepted under
    max_val_loss_increase: float


FIRST_LAYERS = ("folded", "plain")


@dataclass(frozen=True)
class GraphForm:
    """How export wrote the graph. ``folded``: the embedding folded into the first layer, as one
    table per context position (E @ W1_i) looked up and summed; ``plain``: the lecture's embedding,
    concatenation and matrix product. Absent (files from before): plain."""

    first_layer: str = "plain"

    def __post_init__(self) -> None:
        if self.first_layer not in FIRST_LAYERS:
            raise ModelFileError(f"graph.first_layer {self.first_layer!r} is not one of {', '.join(FIRST_LAYERS)}")


FORMS = ("exact", "float")
EXP_ONE = 1 << 16  # an exact file's exp table starts here (docs/exact.md)
MAX_EXP_ENTRIES = 1 << 16
MAX_MULTIPLIER = 1 << 28  # an integer logit times its multiplier stays below 2^52


def exp_table_problem(table) -> str | None:
    """What is wrong with an exact file's exp table, or None."""
    if not all(_is_int(v) and 0 <= v <= EXP_ONE for v in table):
        return f"the exp table's entries must be integers from 0 to {EXP_ONE}"
    if not 2 <= len(table) <= MAX_EXP_ENTRIES:
        return f"the exp table has {len(table)} entries, expected 2 to {MAX_EXP_ENTRIES:,}"
    if table[0] != EXP_ONE or table[-1] != 0 or min(table[:-1]) <= 0 or any(a < b for a, b in zip(table, table[1:])):
        return f"the exp table must start at {EXP_ONE}, fall, stay positive and end with one 0"
    return None


@dataclass(frozen=True)
class ExactForm:
    """The integer-exact form's constants (docs/exact.md): what the runtime needs after the graph.

    The graph returns each member's output layer as integers; ``multipliers[m][v]`` turns member
    m's integer for id v into a logit in 2^-8 nats, ``exp_table`` gives the unnormalised mass of a
    logit d units below the member's largest. ``bounds`` holds, per reduction, the largest
    partial sum the stored integers can reach (each below 2^24); load and ``verify`` recompute it.
    """

    tanh_step_bits: int  # the tanh table's step is 2^-tanh_step_bits in the pre-activation
    exp_table: tuple[int, ...]
    multipliers: tuple[tuple[int, ...], ...]  # (members, vocab)
    bounds: dict[str, int]

    def __post_init__(self) -> None:
        if not 1 <= self.tanh_step_bits <= 16:
            raise ModelFileError(f"exact.tanh_step_bits {self.tanh_step_bits} is outside 1..16")
        problem = exp_table_problem(self.exp_table)
        if problem:
            raise ModelFileError(problem)
        if not all(_is_int(m) and 1 <= m < MAX_MULTIPLIER for row in self.multipliers for m in row):
            raise ModelFileError("exact.multipliers must lie in 1..2^28-1")


@dataclass(frozen=True)
class Integrity:
    """SHA-256 digests taken at export, which ``nametool-run verify`` recomputes from the file.

    A check against accidents (a bad copy, an edit, a bit flip), not a signature:
    whoever can edit the file can recompute them.
    """

    tensors: dict[str, str]  # each top-level initializer's stored bytes, by name
    graph: str  # everything else outside the metadata: nodes, inputs, outputs, opsets
    metadata: dict[str, str]  # each metadata section but this one, as canonical JSON


@dataclass(frozen=True)
class ModelMeta:
    """The whole payload stored under ``METADATA_KEY``."""

    vocab: Vocab
    model: ModelConfig
    sampling: SamplingDefaults
    provenance: Provenance
    known_names: KnownNames | None = None  # what --novel checks against: every name of the dataset
    golden: Golden | None = None  # set by export
    quantization: Quantization | None = None  # set by export --quantize
    graph: GraphForm | None = None  # set by export
    exact: ExactForm | None = None  # set by export --form exact (the default)
    integrity: Integrity | None = None  # set by export, last
    schema_version: int = field(default=SCHEMA_VERSION)

    def to_json(self) -> str:
        payload = asdict(self)
        return json.dumps(payload, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMeta:
        try:
            payload = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise ModelFileError(f"metadata is not valid JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise ModelFileError("metadata is not a JSON object")
        version = payload.get("schema_version")
        if not _is_int(version) or version not in ACCEPTED_SCHEMA_VERSIONS:
            known = ", ".join(map(str, ACCEPTED_SCHEMA_VERSIONS))
            raise ModelFileError(
                f"metadata schema version {version!r} is not one this nametool reads ({known}); "
                "upgrade nametool or re-export the model"
            )
        try:
            return cls(
                vocab=_build(Vocab, payload, "vocab", tuples=("chars",)),
                model=_build(ModelConfig, payload, "model", tuples=("hidden",)),
                sampling=_build(SamplingDefaults, payload, "sampling"),
                provenance=_build(Provenance, payload, "provenance"),
                known_names=_optional(KnownNames, payload, "known_names"),
                golden=_optional(Golden, payload, "golden", tuples=("contexts",), nested=("probs",)),
                quantization=_optional(Quantization, payload, "quantization"),
                graph=_optional(GraphForm, payload, "graph"),
                exact=_optional(ExactForm, payload, "exact", tuples=("exp_table",), nested=("multipliers",)),
                integrity=_optional(Integrity, payload, "integrity"),
                schema_version=version,
            )
        except TypeError as exc:
            raise ModelFileError(f"metadata field has the wrong type ({exc})") from None

    @property
    def first_layer(self) -> str:
        """``folded`` or ``plain``; files from before ``graph`` existed are plain."""
        return "plain" if self.graph is None else self.graph.first_layer

    @property
    def form(self) -> str:
        """``exact`` (integer arithmetic, the same names everywhere) or ``float``."""
        return "float" if self.exact is None else "exact"

    def with_provenance(self, **changes: Any) -> ModelMeta:
        return replace(self, provenance=replace(self.provenance, **changes))


def metadata_digests(text: str) -> dict[str, str]:
    """SHA-256 of each section of a metadata JSON value but ``integrity``, each as canonical JSON."""
    import hashlib  # here: loading a model needs no digest, and the import costs start-up time

    payload = json.loads(text)
    return {key: hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False,
                                           separators=(",", ":")).encode()).hexdigest()
            for key, value in payload.items() if key != "integrity"}


def _optional(cls, payload: dict, key: str, **how):
    return None if payload.get(key) is None else _build(cls, payload, key, **how)


def _build(cls, payload: dict, key: str, tuples: tuple[str, ...] = (), nested: tuple[str, ...] = ()):
    section = payload.get(key)
    if not isinstance(section, dict):
        raise ModelFileError(f"metadata is missing the {key!r} section")
    known = {f.name: f for f in fields(cls)}
    required = [
        name for name, f in known.items() if f.default is MISSING and f.default_factory is MISSING
    ]
    missing = [name for name in required if name not in section]
    if missing:
        raise ModelFileError(f"metadata {key!r} is missing {', '.join(missing)}")
    values = {name: section[name] for name in known if name in section}
    for name in (*tuples, *nested):
        if not isinstance(values[name], list):
            raise ModelFileError(f"metadata {key}.{name} must be a list")
        values[name] = tuple(values[name])
    for name in nested:
        if not all(isinstance(row, list) for row in values[name]):
            raise ModelFileError(f"metadata {key}.{name} must be a list of lists")
        values[name] = tuple(tuple(row) for row in values[name])
    check_types(cls, values, f"metadata {key}")
    return cls(**values)


def check_types(cls, values: dict, where: str) -> None:
    """Refuse a value read from a file that does not fit its dataclass field's annotation."""
    hints = _hints(cls)
    for name, value in values.items():
        if not _checker(hints[name])(value):
            raise ModelFileError(f"{where}.{name} must be {_describe(hints[name])}, not {_short(value)}")


@cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def _checker(hint) -> Callable[[Any], bool]:
    """Does a JSON value fit a field's annotation? (int, float, str, None, unions, tuple[X, ...])

    The test for each annotation is built once: the golden rows alone hold a thousand numbers,
    and walking the annotation for each of them cost 4 ms of every load."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = tuple(_checker(h) for h in typing.get_args(hint))
        return lambda value: any(check(value) for check in options)
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if item is float:  # exact types: JSON gives int, float or bool, and bool is no number
            return lambda value: isinstance(value, tuple) and all(type(v) is float or type(v) is int for v in value)
        check_item = _checker(item)
        return lambda value: isinstance(value, tuple) and all(check_item(v) for v in value)
    if origin is dict:
        check_key, check_item = (_checker(h) for h in typing.get_args(hint))
        return lambda value: isinstance(value, dict) and all(check_key(k) and check_item(v) for k, v in value.items())
    if hint is float:  # JSON writes 1.0 as 1
        return lambda value: _is_int(value) or isinstance(value, float)
    if hint is int:
        return _is_int
    return lambda value: isinstance(value, hint)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is no number


def _describe(hint, plural: bool = False) -> str:
    """``float | None`` -> "a number or null", ``tuple[str, ...]`` -> "a list of strings"."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(h, plural) for h in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return ("lists of " if plural else "a list of ") + _describe(typing.get_args(hint)[0], plural=True)
    if typing.get_origin(hint) is dict:
        return ("objects of " if plural else "an object of ") + _describe(typing.get_args(hint)[1], plural=True)
    words = {str: ("a string", "strings"), int: ("an integer", "integers"), float: ("a number", "numbers"),
             type(None): ("null", "nulls")}
    return words.get(hint, (hint.__name__, hint.__name__))[plural]


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, tuple) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
