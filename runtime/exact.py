"""The exact form's arithmetic: from the integers the graph returns to the drawn character.

docs/exact.md is the specification; this module is its numpy implementation. Every
step is integer arithmetic (int64 here; JavaScript doubles below 2^53, C integers
elsewhere), so the same file, seed and options draw the same ids on every device.

The graph returns ``z`` (rows, members, vocab): each member's output layer as exact
integers held in float32 (every partial sum below 2^24, checked at export and on load).
Then, per row:

1. logits: ``l = (z * multiplier + 2^23) >> 24`` in units of 2^-8 nats, per member and id;
2. masks (min-len, banned words) remove ids before anything else;
3. per member: ``d = max(l) - l``, divided by the temperature as ``(d << 16) // t16``;
   ``e = EXP[d]`` (0 past the table), normalised ``q = (e << 24) // sum(e)``;
4. the mixture ``P = sum over members of q``;
5. top-k (ties go to the lower id), top-p, min-p on ``P``;
6. a draw: ``u24`` = the top 24 bits of the stream's draw, ``t = (u24 * total) >> 24``,
   the first id whose cumulative ``P`` exceeds ``t``.
"""

from __future__ import annotations

import numpy as np

from nametool.runtime.errors import ModelFileError
from nametool.runtime.schema import EXP_ONE, INPUT_NAME, OUTPUT_NAME

# Initializer names of the exact graph, shared by the exporter, the checks and other engines.
TABLES = "exact.tables"  # int16 (context * vocab, members * hidden): first layer, folded, per position
TANH = "exact.tanh"  # int16 (2N + 1,): round(255 * tanh((j - N) * 2^-step_bits))


def bias_name(layer: int) -> str:
    """int32: bias plus the tanh index's rounding half and offset; (members * width,) for the first
    hidden layer, (members, 1, width) for the others."""
    return f"exact.bias{layer}"


def scale_name(layer: int) -> str:
    """float32, 2^-shift per unit, turning a layer's sum into a tanh table index; shaped as the bias."""
    return f"exact.scale{layer}"


def weight_name(layer: int) -> str:
    """int8 (members, width_in, width_out): hidden layers after the first."""
    return f"exact.weight{layer}"


OUT_WEIGHT = "exact.out_weight"  # int8 (members, hidden, vocab)
OUT_BIAS = "exact.out_bias"  # int32 (members, 1, vocab)

OFFSETS, AXIS, LOW, HIGH, BY_MEMBER = "exact.offsets", "exact.axis1", "exact.low", "exact.high", "exact.by_member"
FLOAT, INT64 = 1, 7  # the ONNX element types the graph casts to


def graph_nodes(layers: int) -> list[tuple[str, tuple[str, ...], str, dict]]:
    """The exact graph for ``layers`` hidden layers, node by node: (op_type, inputs, output,
    attributes). Export writes exactly this, and load and ``verify`` require it of a file."""
    nodes = []

    def node(op: str, inputs: list[str], output: str, **attrs) -> str:
        nodes.append((op, tuple(inputs), output, attrs))
        return output

    def as_float(name: str) -> str:  # integers stored narrow, computed in float32: a constant on load
        return node("Cast", [name], f"{name}.f", to=FLOAT)

    def activation(summed: str, layer: int) -> str:  # tanh[clip(floor(z * 2^-s), 0, 2N)]
        index = node("Floor", [node("Mul", [summed, scale_name(layer)], f"scaled{layer}")], f"floor{layer}")
        index = node("Clip", [index, LOW, HIGH], f"clipped{layer}")
        return node("Gather", [tanh, node("Cast", [index], f"index{layer}", to=INT64)], f"tanh{layer}", axis=0)

    tanh = as_float(TANH)
    ids = node("Add", [INPUT_NAME, OFFSETS], "ids")
    rows = node("Gather", [as_float(TABLES), ids], "rows1", axis=0)  # (batch, context, members * hidden)
    summed = node("Add", [node("ReduceSum", [rows, AXIS], "sum1", keepdims=0), as_float(bias_name(1))], "z1")
    x = node("Reshape", [activation(summed, 1), BY_MEMBER], "a1")  # (batch, members, hidden)
    x = node("Transpose", [x], "a1.t", perm=[1, 0, 2])  # (members, batch, hidden)
    for layer in range(2, layers + 1):
        product = node("MatMul", [x, as_float(weight_name(layer))], f"mm{layer}")
        x = activation(node("Add", [product, as_float(bias_name(layer))], f"z{layer}"), layer)
    z = node("Add", [node("MatMul", [x, as_float(OUT_WEIGHT)], "mm.out"), as_float(OUT_BIAS)], "z.out")
    node("Transpose", [z], OUTPUT_NAME, perm=[1, 0, 2])  # (batch, members, vocab)
    return nodes


def graph_constants(*, context_size: int, vocab_size: int, members: int, hidden: tuple[int, ...],
                    tanh_entries: int) -> dict[str, np.ndarray]:
    """The graph's other initializers, which follow from the configuration and the tanh table."""
    return {OFFSETS: np.arange(context_size, dtype=np.int64) * vocab_size, AXIS: np.array([1], dtype=np.int64),
            LOW: np.array(0, dtype=np.float32), HIGH: np.array(tanh_entries - 1, dtype=np.float32),
            BY_MEMBER: np.array([-1, members, hidden[0]], dtype=np.int64)}


def check_graph(nodes, arrays: dict[str, np.ndarray], meta) -> None:
    """A file's graph must be the exact form's, node for node, with its constants: another graph
    could compute anything, in any arithmetic. Raises ModelFileError naming the first difference."""
    config = meta.model
    expected = graph_nodes(len(config.hidden))
    if len(nodes) != len(expected):
        raise ModelFileError(f"exact form: the graph has {len(nodes)} nodes, not the exact form's {len(expected)}")
    for i, (node, (op, inputs, output, attrs)) in enumerate(zip(nodes, expected)):
        same_attrs = node.attributes.keys() == attrs.keys() and all(
            type(node.attributes[k]) is type(v) and node.attributes[k] == v for k, v in attrs.items())
        if (node.op_type, node.domain in ("", "ai.onnx"), tuple(node.inputs), tuple(node.outputs), same_attrs) != (
                op, True, inputs, (output,), True):
            raise ModelFileError(f"exact form: graph node {i} ({node.op_type} -> {', '.join(node.outputs)}) is not "
                                 f"the exact form's ({op} -> {output})")
    tanh_entries = len(arrays[TANH]) if TANH in arrays else 0
    constants = graph_constants(context_size=config.context_size, vocab_size=len(meta.vocab),
                                members=config.members, hidden=config.hidden, tanh_entries=tanh_entries)
    for name, value in constants.items():
        if name not in arrays or arrays[name].dtype != value.dtype or not np.array_equal(arrays[name], value):
            raise ModelFileError(f"exact form: the graph constant {name!r} is missing or not the exact form's")


PARTIAL_SUM_LIMIT = 1 << 24  # float32 holds every integer below this exactly
LOGIT_SHIFT = 24  # l = (z * multiplier + 2^23) >> 24: logits in 2^-8 nats
LOGIT_BITS = 8  # the exp table's step: 2^-8 nats
MASS_SHIFT = 24  # each member's distribution sums to at most 2^24
FIXED_ONE = 1 << 16  # temperature, top-p and min-p as multiples of 2^-16
MAX_T16 = 1 << 46  # a larger temperature divides every d to 0 all the same
UNIFORM_BITS = 24
TANH_PEAK = 255


def to_fixed(value: float) -> int:
    """``round(value * 2^16)``, ties to even: one exact product and a defined rounding."""
    return int(round(value * FIXED_ONE))


def member_logits(z: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
    """(rows, members, vocab) int64 logits in 2^-8 nats from the graph's integers."""
    z = z.astype(np.int64)
    return (z * multipliers + (1 << (LOGIT_SHIFT - 1))) >> LOGIT_SHIFT


def mixture(logits: np.ndarray, exp_table: np.ndarray, *, allowed: np.ndarray | None = None,
            t16: int = FIXED_ONE) -> np.ndarray:
    """P (rows, vocab) int64: the members' normalised integer distributions summed.

    ``allowed`` (rows, vocab) bool masks ids out before each member's maximum is taken, so the
    most likely allowed id of each member gets ``EXP[0]``; a row must allow at least one id.
    ``exp_table`` ends with a 0 that every ``d`` past the table maps to.
    """
    if allowed is not None:
        logits = np.where(allowed[:, None, :], logits, np.iinfo(np.int64).min)
    top = logits.max(axis=2, keepdims=True)
    d = top - logits  # >= 0 for allowed ids; masked ids' values wrapped round, and replaced next
    if allowed is not None:
        d = np.where(allowed[:, None, :], d, 0)  # their mass is zeroed below
    if t16 != FIXED_ONE:
        d = (d << 16) // t16
    np.minimum(d, len(exp_table) - 1, out=d)
    e = exp_table[d]  # (rows, members, vocab)
    if allowed is not None:
        e *= allowed[:, None, :]
    total = e.sum(axis=2, keepdims=True)
    return ((e << MASS_SHIFT) // total).sum(axis=1)


def uniform_bits(uniforms: np.ndarray) -> np.ndarray:
    """The top 24 bits of each draw of the random stream: exact, since a draw is k * 2^-53."""
    return np.floor(uniforms * float(1 << UNIFORM_BITS)).astype(np.int64)


def filter_mass(P: np.ndarray, *, top_k: int | None = None, p16: int | None = None,
                m16: int | None = None) -> np.ndarray:
    """P with ids outside top-k, top-p and min-p set to 0, in that order; ranks by P, ties by id."""
    vocab = P.shape[1]
    if top_k is None or top_k >= vocab:
        top_k = None
    if top_k is None and p16 is None and not m16:
        return P
    P = P.copy()
    order = np.argsort(-P, axis=1, kind="stable")  # (rows, vocab): most likely first, ties by lower id
    ranked = np.take_along_axis(P, order, axis=1)
    if top_k is not None:
        ranked[:, top_k:] = 0
    if p16 is not None:
        before = np.cumsum(ranked, axis=1) - ranked
        total = ranked.sum(axis=1, keepdims=True)
        drop = before * FIXED_ONE >= p16 * total
        drop[:, 0] = False  # the most likely id always stays
        ranked[drop] = 0
    if m16:
        drop = ranked * FIXED_ONE < m16 * ranked[:, :1]
        drop[:, 0] = False
        ranked[drop] = 0
    np.put_along_axis(P, order, ranked, axis=1)
    return P


def draw_ids(P: np.ndarray, u24: np.ndarray) -> np.ndarray:
    """The first id whose cumulative mass exceeds ``(u24 * total) >> 24``; ids of zero mass never."""
    cdf = np.cumsum(P, axis=1)
    threshold = (u24 * cdf[:, -1]) >> UNIFORM_BITS
    return (cdf <= threshold[:, None]).sum(axis=1)


def temperature_fixed(temperature: float) -> int:
    """t16 for a temperature >= 0; 0 means greedy (temperatures up to 2^-17 round to it)."""
    return MAX_T16 if temperature >= MAX_T16 / FIXED_ONE else min(to_fixed(temperature), MAX_T16)


def exact_probs(z: np.ndarray, multipliers: np.ndarray, exp_table: np.ndarray, *, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
                allowed: np.ndarray | None = None) -> np.ndarray:
    """The sampling mass of each id (rows, vocab) int64 as the spec defines it; temperature 0:
    all of it on the most likely id (ties: the lower)."""
    t16 = temperature_fixed(temperature)
    P = mixture(member_logits(z, multipliers), exp_table, allowed=allowed, t16=t16 or FIXED_ONE)
    if t16 == 0:
        greedy = np.zeros_like(P)
        greedy[np.arange(len(P)), P.argmax(axis=1)] = 1
        return greedy
    return filter_mass(P, top_k=top_k, p16=None if top_p is None or top_p >= 1 else to_fixed(top_p),
                       m16=to_fixed(min_p) if min_p else None)


def dequantized_logits(z: np.ndarray, multipliers: np.ndarray) -> np.ndarray:
    """(rows, vocab) float64: log of the mean of the members' softmax of ``z * multiplier * 2^-32``
    (exact products), the model as real numbers, for scores and losses."""
    x = z.astype(np.float64) * multipliers * 2.0 ** -(LOGIT_SHIFT + LOGIT_BITS)  # nats
    x -= x.max(axis=2, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=2, keepdims=True))
    top = logp.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(logp - top).mean(axis=1, keepdims=True)))[:, 0, :]


def make_exp_table() -> np.ndarray:
    """``EXP[d] = round(2^16 * exp(-d / 256))`` while it is positive, then one 0.

    Computed once at export and stored in the file: no device evaluates ``exp``."""
    d = np.arange(0, 1 << 14, dtype=np.float64)
    values = np.rint(EXP_ONE * np.exp(-d / (1 << LOGIT_BITS))).astype(np.int64)
    return np.append(values[values > 0], 0)


def partial_sum_bounds(arrays: dict[str, np.ndarray], *, context_size: int, vocab_size: int, members: int,
                       hidden: tuple[int, ...]) -> dict[str, int]:
    """The largest magnitude any partial sum of each reduction can reach, whatever the summation order,
    from the stored integers: per output unit, the sum of its terms' largest magnitudes.

    Raises ModelFileError, naming the initializer, where a tensor is missing or of the wrong shape.
    """
    width = members * hidden[0]
    tables = _array(arrays, TABLES, (context_size * vocab_size, width), np.int16)
    tanh = _array(arrays, TANH, None, np.int16).astype(np.int64)
    if tanh.ndim != 1 or len(tanh) % 2 == 0 or len(tanh) < 3:
        raise ModelFileError(f"{TANH}: the tanh table must hold an odd number (3 or more) of entries, "
                             f"not shape {tanh.shape}")
    if np.abs(tanh).max() > TANH_PEAK:
        raise ModelFileError(f"{TANH}: values beyond {TANH_PEAK} in magnitude")
    peak = int(np.abs(tanh).max())
    by_position = np.abs(tables.astype(np.int64)).reshape(context_size, vocab_size, width).max(axis=1).sum(axis=0)
    bias = _array(arrays, bias_name(1), (width,), np.int32)
    _check_scale(arrays, 1, (width,))
    bounds = {"layer1": int((by_position + np.abs(bias.astype(np.int64))).max())}
    for layer in range(2, len(hidden) + 1):
        shape = (members, hidden[layer - 2], hidden[layer - 1])
        weight = _array(arrays, weight_name(layer), shape, np.int8)
        bias = _array(arrays, bias_name(layer), (members, 1, shape[2]), np.int32)
        _check_scale(arrays, layer, (members, 1, shape[2]))
        terms = peak * np.abs(weight.astype(np.int64)).sum(axis=1, keepdims=True)  # (members, 1, out)
        bounds[f"layer{layer}"] = int((terms + np.abs(bias.astype(np.int64))).max())
    weight = _array(arrays, OUT_WEIGHT, (members, hidden[-1], vocab_size), np.int8)
    bias = _array(arrays, OUT_BIAS, (members, 1, vocab_size), np.int32)
    terms = peak * np.abs(weight.astype(np.int64)).sum(axis=1, keepdims=True)
    bounds["output"] = int((terms + np.abs(bias.astype(np.int64))).max())
    return bounds


def _array(arrays: dict, name: str, shape, dtype) -> np.ndarray:
    if name not in arrays:
        raise ModelFileError(f"the exact form's tensor {name!r} is missing")
    value = arrays[name]
    if value.dtype != dtype:
        raise ModelFileError(f"{name}: expected {np.dtype(dtype).name} integers, found {value.dtype}")
    if shape is not None and value.shape != shape:
        raise ModelFileError(f"{name}: shape {value.shape}, expected {shape}")
    return value


def _check_scale(arrays: dict, layer: int, shape: tuple) -> None:
    name = scale_name(layer)
    if name not in arrays:
        raise ModelFileError(f"the exact form's tensor {name!r} is missing")
    scale = arrays[name]
    if scale.shape != shape or scale.dtype != np.float32:
        raise ModelFileError(f"{name}: expected float32 of shape {shape}, found {scale.dtype} {scale.shape}")
    mantissa, exponent = np.frexp(scale.astype(np.float64))
    if not ((mantissa == 0.5) & (exponent <= 1) & (exponent >= -22)).all():
        raise ModelFileError(f"{name}: every entry must be a power of two from 2^-23 to 1")


def exact_tables(meta) -> tuple[np.ndarray, np.ndarray]:
    """(multipliers (members, vocab) int64, exp table int64) from the metadata, whose values the
    schema has checked (``ExactForm``); here what depends on the rest of it. Raises ModelFileError."""
    exact, config = meta.exact, meta.model
    if config.norm != "none":
        raise ModelFileError("the exact form has no layer norm, yet the metadata says norm 'layer'")
    rows = exact.multipliers
    if len(rows) != config.members or any(len(row) != len(meta.vocab) for row in rows):
        raise ModelFileError(f"exact.multipliers must be {config.members} rows of {len(meta.vocab)}, one per "
                             "member and id")
    return np.array(rows, dtype=np.int64), np.array(exact.exp_table, dtype=np.int64)


def check_exact(file, meta) -> dict[str, int]:
    """Check a file's exact form (an ``onnxfile.OnnxFile``) against its metadata: shapes, tables,
    multipliers, every partial-sum bound recomputed from the stored integers, and the graph itself.
    Returns the bounds; raises ModelFileError with one line naming what is wrong."""
    exact_tables(meta)
    config, arrays = meta.model, file.initializers
    bounds = partial_sum_bounds(arrays, context_size=config.context_size, vocab_size=len(meta.vocab),
                                members=config.members, hidden=config.hidden)
    for layer, bound in bounds.items():
        if bound >= PARTIAL_SUM_LIMIT:
            raise ModelFileError(f"exact form: a partial sum of {layer} can reach {bound:,}, not below 2^24 "
                                 "(float32 would round it)")
    if meta.exact.bounds != bounds:
        raise ModelFileError(f"exact form: the stated bounds {meta.exact.bounds} differ from the stored "
                             f"integers' {bounds}")
    check_graph(file.nodes, arrays, meta)
    return bounds


def draw(z: np.ndarray, uniforms: np.ndarray, multipliers: np.ndarray, exp_table: np.ndarray, *,
         temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
         min_p: float | None = None, forbid: int | None = None, allowed: np.ndarray | None = None,
         rows: np.ndarray | None = None) -> np.ndarray:
    """One id per uniform, as the spec draws it. ``z`` (rows, members, vocab) from the graph;
    ``forbid``: an id no row may draw; ``allowed`` (rows, vocab): per-row masks; ``rows``: uniform i
    draws from row ``rows[i]`` of ``z`` (shared contexts), None: from row i."""
    from nametool.runtime.sampling import UnusableLogits

    if forbid is not None:
        allowed = np.ones((len(z), z.shape[2]), dtype=bool) if allowed is None else allowed.copy()
        allowed[:, forbid] = False
    if allowed is not None and not allowed.any(axis=1).all():
        raise UnusableLogits(int((~allowed.any(axis=1)).argmax()), float("-inf"))
    P = exact_probs(z, multipliers, exp_table, temperature=temperature, top_k=top_k, top_p=top_p,
                    min_p=min_p, allowed=allowed)
    if rows is not None:
        P = P[rows]
    return draw_ids(P, uniform_bits(uniforms))
