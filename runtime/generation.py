"""The generation engine: all names advance together, one model call per character position.

Names that so far drew the same characters share their row of that call: every
name starts from the same context, so the first positions need only a few
distinct rows (one at the first, one per first letter at the second), which
roughly halves the model's work for a batch of 1,024 names.

Randomness is laid out as one uniform per (name, position): name ``i`` of a
request reads row ``i`` of a ``(count, max_len)`` matrix, drawn chunk by chunk
in order from the injected stream (``uniforms.UniformStream``, nametool's own
counter-based generator: the web page draws the same). Consecutive draws come
from one stream, so the names do not depend on how many run through the model
at once. The runtime passes onnxruntime's logits, the PyTorch reference path
torch's: the same seed gives the same names on both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

from nametool.runtime import exact
from nametool.runtime.banned import Banned
from nametool.runtime.errors import DataError, ModelFileError, RequestError
from nametool.runtime.sampling import UnusableLogits, draw
from nametool.runtime.schema import (DEFAULT_BATCH_SIZE, DEFAULT_COUNT, MAX_NAME_LEN, SEED_RANGE, ModelMeta,
                                     valid_seed, valid_temperature)
from nametool.runtime.uniforms import UniformStream
from nametool.runtime.windows import build_windows, target_logprobs

LogitsFn = Callable[[np.ndarray], np.ndarray]  # (batch, context_size) int64 -> (batch, vocab) float

SHARE_UNTIL = 0.9  # look for rows with equal contexts until this share of them is distinct (0: never)
DENSE_KEYS = 8  # _distinct marks a table of up to this many entries per row rather than sorting
UNIQUE_DRAW_FACTOR = 20  # --unique/--novel give up after 20 * count + 1000 draws
UNIQUE_DRAW_EXTRA = 1000
# --suffix/--contains keep names by rejection, which costs 1 / (share of names that match) draws
# each: a suffix one name in 40 ends with needs ~40. They give up after 1000 * count + 100,000.
MATCH_DRAW_FACTOR = 1000
MATCH_DRAW_EXTRA = 100_000


class Request(NamedTuple):  # NamedTuple, not a dataclass: a third of a millisecond less start-up each
    """What the user asked for. ``None`` lengths and temperature take the model's defaults."""

    count: int = DEFAULT_COUNT
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    min_len: int | None = None
    max_len: int | None = None
    prefix: str = ""
    exclude: tuple[str, ...] = ()  # words no name may contain
    suffix: str = ""  # names end with this
    contains: str = ""  # names contain this
    unique: bool = False
    novel: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE


class Plan(NamedTuple):
    """A request checked against a model: every value settled and possible."""

    count: int
    temperature: float
    top_k: int | None
    top_p: float | None
    min_p: float | None
    min_len: int
    max_len: int
    prefix_ids: tuple[int, ...]
    banned: Banned | None  # the automaton of the excluded words
    start_state: int  # its state after the prefix
    suffix: str
    contains: str
    unique: bool
    novel: bool
    batch_size: int
    exact: tuple[np.ndarray, np.ndarray] | None  # an exact file's multipliers and exp table


def plan(request: Request, meta: ModelMeta) -> Plan:
    """Fill defaults from the model and refuse what cannot be done, naming the value."""
    r, defaults = request, meta.sampling
    temperature = defaults.temperature if r.temperature is None else r.temperature
    min_len = defaults.min_len if r.min_len is None else r.min_len
    max_len = defaults.max_len if r.max_len is None else r.max_len
    if r.count < 0:
        raise RequestError(f"count {r.count} is negative")
    check_temperature(temperature)
    if r.top_k is not None and r.top_k < 1:
        raise RequestError(f"top-k {r.top_k} must be at least 1")
    if r.top_p is not None and not 0 < r.top_p <= 1:
        raise RequestError(f"top-p {r.top_p} must be in (0, 1]")
    if r.min_p is not None and not 0 <= r.min_p <= 1:
        raise RequestError(f"min-p {r.min_p} must be in [0, 1]")
    if min_len < 1:
        raise RequestError(f"min-len {min_len} must be at least 1")
    if max_len > MAX_NAME_LEN:  # one uniform per (name, position) is drawn up front
        raise RequestError(f"max-len {max_len} is above the limit {MAX_NAME_LEN}")
    if max_len < min_len:
        raise RequestError(f"max-len {max_len}{_default(r.max_len)} is below min-len {min_len}{_default(r.min_len)}")
    if r.batch_size < 1:
        raise RequestError(f"batch size {r.batch_size} must be at least 1")
    prefix_ids, _, _ = (_encode(what, text, meta, max_len)
                        for what, text in (("prefix", r.prefix), ("suffix", r.suffix), ("contains", r.contains)))
    banned, start_state = None, 0
    if r.exclude:
        banned = Banned(r.exclude, meta.vocab)
        start_state = banned.walk(prefix_ids)
        if start_state < 0:
            raise RequestError(f"prefix {r.prefix!r} contains an excluded word")
    if r.novel and meta.known_names is None:
        raise RequestError("this model file carries no training names, so --novel cannot check them")
    return Plan(r.count, temperature, r.top_k, r.top_p, r.min_p, min_len, max_len, prefix_ids, banned, start_state,
                r.suffix, r.contains,
                r.unique, r.novel, r.batch_size, _exact_tables(meta))


def _exact_tables(meta: ModelMeta) -> tuple[np.ndarray, np.ndarray] | None:
    return None if meta.exact is None else exact.exact_tables(meta)


def _encode(what: str, text: str, meta: ModelMeta, max_len: int) -> tuple[int, ...]:
    """The ids of a prefix, suffix or contained string, refused if the vocabulary or max-len cannot have it."""
    try:
        ids = tuple(meta.vocab.encode(text))
    except ValueError as exc:
        raise RequestError(f"{what} {text!r}: {exc}") from None
    if len(ids) > max_len:
        raise RequestError(f"{what} {text!r} is longer than max-len {max_len}")
    return ids


def make_rng(seed: int | None) -> UniformStream:
    """The stream of uniforms a seed names (None: a seed from the OS's entropy)."""
    if seed is not None and not valid_seed(seed):
        raise RequestError(f"seed {seed} is outside {SEED_RANGE}")
    return UniformStream(seed)


def check_temperature(temperature: float) -> None:
    if not valid_temperature(temperature):
        raise RequestError(f"temperature {temperature} must be a finite number >= 0")


def _default(given) -> str:
    return " (the model's default)" if given is None else ""


def generate(logits_fn: LogitsFn, meta: ModelMeta, request: Request, rng: UniformStream) -> list[str]:
    """Sample names as ``request`` says; with unique/novel, draw until enough pass, within a bound."""
    return [name for chunk in iter_names(logits_fn, meta, request, rng) for name in chunk]


def iter_names(logits_fn: LogitsFn, meta: ModelMeta, request: Request,
               rng: UniformStream) -> Iterator[list[str]]:
    """The names of ``generate``, in chunks of at most ``batch_size`` as they are made.

    Memory stays bounded whatever the count; with unique/novel it grows with the names
    kept (the set that later names are checked against). The random stream is consumed
    exactly as by ``generate``, so the names are the same.

    Suffix and contains are met by rejection: names are drawn from the model and kept if
    they match, so the kept names follow the model's distribution restricted to the
    constraint (masking would skew it). A request gives up with an error rather than hang:
    after ``20 * count + 1000`` draws for unique and novel, ``1000 * count + 100000`` with
    suffix or contains (rejection pays one draw per name over the share that matches).
    """
    p = plan(request, meta)
    if not (p.unique or p.novel or p.suffix or p.contains):
        yield from _chunks(logits_fn, meta, p, p.count, rng)
        return
    known = meta.known_names.names if p.novel else frozenset()
    seen: set[str] = set()
    matching = bool(p.suffix or p.contains)
    budget = (MATCH_DRAW_FACTOR * p.count + MATCH_DRAW_EXTRA if matching else
              UNIQUE_DRAW_FACTOR * p.count + UNIQUE_DRAW_EXTRA)
    drawn = kept = 0
    while kept < p.count:
        if drawn >= budget:
            adjectives = " and ".join(w for w, on in (("unique", p.unique), ("novel", p.novel)) if on)
            constraints = " and ".join(w for w, on in ((f"ending in {p.suffix!r}", p.suffix),
                                                       (f"containing {p.contains!r}", p.contains)) if on)
            wanted = " ".join(part for part in (adjectives, "names", constraints) if part)
            raise RequestError(
                f"found only {kept} {wanted} of the {p.count} asked for in {drawn} draws; "
                "ask for fewer, or loosen temperature, top-k, top-p, min-p, prefix, suffix, contains or lengths"
            )
        missing = p.count - kept
        batch = missing + missing // 4 + 16
        if matching and kept:  # draw what the share matched so far says is needed, and a quarter more
            batch = max(batch, min(int(1.25 * missing * drawn / kept) + 16, 1 << 20))
        batch = min(budget - drawn, batch)
        for chunk in _chunks(logits_fn, meta, p, batch, rng):
            fresh = []
            for name in chunk:
                if name in known or (p.unique and name in seen) or not name.endswith(p.suffix) or \
                        p.contains not in name:
                    continue
                if p.unique:
                    seen.add(name)
                fresh.append(name)
                if kept + len(fresh) == p.count:
                    break
            kept += len(fresh)
            yield fresh
            if kept == p.count:
                return
        drawn += batch


def _chunks(logits_fn: LogitsFn, meta: ModelMeta, p: Plan, count: int,
            rng: UniformStream) -> Iterator[list[str]]:
    for start in range(0, count, p.batch_size):
        uniforms = rng.random((min(p.batch_size, count - start), p.max_len))  # one per (name, position)
        yield _sample_chunk(logits_fn, meta, p, uniforms)


def _sample_chunk(logits_fn: LogitsFn, meta: ModelMeta, p: Plan, uniforms: np.ndarray) -> list[str]:
    rows, end = len(uniforms), meta.vocab.end_id
    context_size = meta.model.context_size
    start = (end,) * context_size + p.prefix_ids
    context = np.tile(np.array(start[len(start) - context_size:], dtype=np.int64), (rows, 1))
    out = np.full((rows, p.max_len), end, dtype=np.int64)
    out[:, :len(p.prefix_ids)] = p.prefix_ids
    row = np.arange(rows)  # which output row each still-active context belongs to
    model = SharedRows(logits_fn, len(meta.vocab), rows)
    state = np.full(rows, p.start_state, dtype=np.int32)  # each name's place in the banned-word automaton
    by_position = np.ascontiguousarray(uniforms.T)  # (max_len, rows): a position's uniforms in one row
    for pos in range(len(p.prefix_ids), p.max_len):  # at max_len the end is forced
        forbid = end if pos < p.min_len else None
        logits, shared = model.logits(context)
        allowed = None
        if p.banned is not None:  # no character that would complete an excluded word
            logits, shared = (logits if shared is None else logits[shared]), None
            if p.exact is None:
                logits = np.where(p.banned.completes[state], np.float32(-np.inf), logits)
            else:
                allowed = ~p.banned.completes[state]
        try:
            if p.exact is None:
                ids = draw(logits, by_position[pos][row], temperature=p.temperature, top_k=p.top_k,
                           top_p=p.top_p, min_p=p.min_p, forbid=forbid, rows=shared)
            else:
                if np.ndim(logits) != 3:
                    raise TypeError("an exact file samples from its integers (batch, members, vocab): "
                                    "pass NameModel.sampling_logits, not logits")
                ids = exact.draw(logits, by_position[pos][row], *p.exact, temperature=p.temperature,
                                 top_k=p.top_k, top_p=p.top_p, min_p=p.min_p, forbid=forbid, allowed=allowed,
                                 rows=shared)
        except UnusableLogits as exc:
            raise _unusable(exc, meta.vocab.decode(out[row[exc.row], :pos]), forbid is not None, p) from None
        going = ids != end
        if not going.all():  # retire finished names
            row, context, ids = row[going], context[going], ids[going]
            if not len(row):
                break
        if p.banned is not None:
            state = p.banned.next[state[going], ids]
        model.advance(going, ids)
        out[row, pos] = ids
        context[:, :-1] = context[:, 1:]
        context[:, -1] = ids
    return _decode_rows(out, meta)


class SharedRows:
    """The logits call, with rows that have drawn the same ids so far sharing one row of it.

    All rows start from the same context, so early positions hold few distinct
    ones (a single one at the first, at most one per character at the second):
    rows with the same ``key`` (the ids drawn so far, as one base-vocab number)
    have the same context. Each row still gets its own uniform, so the names are
    those of unshared calls. Once almost every row is distinct it stays so (until
    the window slides past the first ids drawn), and sharing stops.
    """

    def __init__(self, logits_fn: LogitsFn, vocab_size: int, rows: int):
        self._logits_fn, self._base = logits_fn, vocab_size
        self._steps = _exact_key_steps(vocab_size) if SHARE_UNTIL > 0 else 0  # before a key could overflow
        self._key = np.zeros(rows, dtype=np.int64)
        self._space = 1  # every key is below this: vocab_size ** ids drawn

    def logits(self, context: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(logits, rows): ``logits[rows[i]]`` is row i's, or ``logits[i]`` where rows is None.

        Draws take the shared rows as they are (``sampling.draw(rows=...)``): the softmax of a
        shared row is computed once.
        """
        if self._steps <= 0:
            return self._logits_fn(context), None
        first, inverse = _distinct(self._key, self._space)
        if len(first) >= SHARE_UNTIL * len(self._key):
            self._steps = 0  # this call still shares; the next ones do not
        return np.asarray(self._logits_fn(context[first])), inverse

    def advance(self, going: np.ndarray, ids: np.ndarray) -> None:
        """The rows still going (a mask over the last call's rows) drew ``ids``."""
        if self._steps <= 0:
            return
        self._steps -= 1
        if self._steps > 0:
            self._key = self._key[going] * self._base + ids
            self._space *= self._base


def _distinct(keys: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """(first, inverse) as ``np.unique(keys, return_index=True, return_inverse=True)`` gives them
    (distinct keys in ascending order; ``first`` may name any row of a key: they share a context).

    Keys below ``space``: where that is small beside the rows (the early positions of a batch,
    with few distinct keys), by marking a table instead of sorting: 2 to 3 times faster at 4,096
    rows on the 2-core Xeon with AVX-512; not timed elsewhere, though a pass over an array in
    place of a sort should gain on any CPU.
    """
    if space > DENSE_KEYS * max(len(keys), 1):
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        return first, inverse
    seen = np.zeros(space, dtype=bool)
    seen[keys] = True
    distinct = np.flatnonzero(seen)
    slot = np.empty(space, dtype=np.intp)
    slot[distinct] = np.arange(len(distinct))
    inverse = slot[keys]
    first = np.empty(len(distinct), dtype=np.intp)
    first[inverse] = np.arange(len(keys))  # some row of each key
    return first, inverse


def _exact_key_steps(vocab_size: int) -> int:
    """How many ids a row's key can hold before ``vocab_size ** steps`` overflows int64."""
    steps = 0
    while steps < MAX_NAME_LEN and vocab_size ** (steps + 1) <= np.iinfo(np.int64).max:
        steps += 1
    return steps


def _unusable(exc: UnusableLogits, text: str, end_masked: bool, p: Plan) -> Exception:
    """Name the context where the model gave no distribution, and whose fault it is."""
    if exc.value == -np.inf and p.banned is not None:
        why = " or is the end, which min-len forbids there" if end_masked else ""
        return RequestError(f"after {text!r} every character the model allows would complete an excluded word{why}; "
                            "exclude fewer words or loosen the request")
    if exc.value == -np.inf and end_masked:
        return RequestError(f"after {text!r} the model gives every character but the end probability 0, "
                            f"and min-len {p.min_len} forbids the end there; lower min-len")
    return ModelFileError(f"the model gives no usable distribution after {text!r} ({exc}); "
                          "the model file is damaged")


def _decode_rows(out: np.ndarray, meta: ModelMeta) -> list[str]:
    """Names from id rows, each padded after its end with the end id.

    Ids map to code points, the end to NUL, and each row is read as one fixed-width
    numpy string, which drops the trailing NULs: no Python loop per name.
    """
    codes = np.array([0, *map(ord, meta.vocab.chars)], dtype=np.uint32)  # end id 0 -> NUL
    rows = np.ascontiguousarray(codes[out])  # (names, max_len)
    return rows.view(f"<U{out.shape[1]}").ravel().tolist()


class Score(NamedTuple):
    """How likely the model finds a name: log-likelihood in nats, including the end."""

    name: str
    logprobs: tuple[float, ...]  # log P(each character, then the end | what came before)

    @property
    def char_probs(self) -> tuple[float, ...]:
        return tuple(float(np.exp(lp)) for lp in self.logprobs)

    @property
    def log_likelihood(self) -> float:
        return float(np.sum(self.logprobs))

    @property
    def perplexity(self) -> float:
        """exp of the mean negative log-likelihood per character (the end counts as one)."""
        return float(np.exp(-self.log_likelihood / len(self.logprobs)))


def score(logits_fn: LogitsFn, meta: ModelMeta, names: list[str]) -> list[Score]:
    """Per-character probabilities of each name (and of its end) under the model."""
    if not names:
        return []
    try:
        contexts, targets = build_windows(names, meta.vocab, meta.model.context_size)
    except DataError:  # some name holds a character outside the vocabulary: say which
        for name in names:
            try:
                meta.vocab.encode(name)
            except ValueError as exc:
                raise RequestError(f"name {name!r}: {exc}") from None
        raise
    logp = target_logprobs(logits_fn, contexts, targets)  # one per character of each name, then its end
    bounds = np.cumsum([0] + [len(n) + 1 for n in names])
    return [Score(name, tuple(logp[bounds[i]:bounds[i + 1]].tolist())) for i, name in enumerate(names)]
