"""The integer-exact form: a checkpoint's weights as integers and tables, and the graph that runs them.

Every hidden layer's pre-activation is an exact integer: the first layer folded into one
int16 table per context position (``E @ W1_i``, one power-of-two scale per hidden unit),
later layers int8 weights on a power-of-two scale per unit. A pre-activation times its
scale, floored, indexes a tanh table of ``round(255 * tanh(x))`` on a 2^-6 grid. The output
layer has int8 weights with one scale per id, kept as an integer multiplier for the runtime
(``runtime/exact.py``). Every partial sum stays below 2^24, so float32 computes each exactly,
in any order, on any device: export checks the bound before it writes (docs/exact.md).
"""

from __future__ import annotations

import numpy as np

from nametool.runtime import exact as spec
from nametool.runtime.errors import NametoolError
from nametool.runtime.schema import INPUT_NAME, MAX_MULTIPLIER, OUTPUT_NAME, ExactForm, ModelMeta

STEP_BITS = 6  # the tanh table's step in the pre-activation: 2^-6
TABLE_PEAK = (1 << 15) - 1  # int16 first-layer tables
WEIGHT_PEAK = 127  # int8 weights, symmetric
MAX_SHIFT = 14  # index = (sum + offset) >> shift: the offset N << shift stays far below 2^24
BIAS_PEAK = 1 << 22  # a bias on its layer's integer scale: a quarter of the partial-sum room at most


class NotExactable(NametoolError):
    """A model the exact form cannot represent; ``--form float`` can."""


def exact_arrays(members: list[dict], context_size: int) -> tuple[dict[str, np.ndarray], np.ndarray, int]:
    """(initializers by ``runtime.exact`` name, multipliers (members, vocab) int64, tanh half-width N)
    from each member's float weights: ``embed`` (vocab, embed), ``linear`` [(weight (out, in), bias)]."""
    tanh, half = tanh_table()
    tables, biases, scales = [], [], []
    for weights in members:
        t, b, s = _first_layer(weights["embed"], *weights["linear"][0], context_size, half)
        tables.append(t), biases.append(b), scales.append(s)
    arrays = {spec.TABLES: _fits(np.concatenate(tables, axis=1), np.int16, "first layer"),
              spec.bias_name(1): _fits(np.concatenate(biases), np.int32, "first layer's bias"),
              spec.scale_name(1): np.concatenate(scales).astype(np.float32),
              spec.TANH: tanh}
    for layer in range(2, len(members[0]["linear"])):
        parts = [_hidden_layer(*weights["linear"][layer - 1], half, layer) for weights in members]
        arrays[spec.weight_name(layer)] = _fits(np.stack([p[0] for p in parts]), np.int8, f"hidden layer {layer}")
        arrays[spec.bias_name(layer)] = _fits(np.stack([p[1] for p in parts])[:, None, :], np.int32,
                                              f"hidden layer {layer}'s bias")
        arrays[spec.scale_name(layer)] = np.stack([p[2] for p in parts])[:, None, :].astype(np.float32)
    parts = [_output_layer(*weights["linear"][-1]) for weights in members]
    arrays[spec.OUT_WEIGHT] = _fits(np.stack([p[0] for p in parts]), np.int8, "output layer")
    arrays[spec.OUT_BIAS] = _fits(np.stack([p[1] for p in parts])[:, None, :], np.int32, "output bias")
    return arrays, np.stack([p[2] for p in parts]), half


def tanh_table(step_bits: int = STEP_BITS) -> tuple[np.ndarray, int]:
    """(int16 table of ``round(255 * tanh(j * 2^-step_bits))`` for j in -N..N, N): N is the first j
    whose value is 255, where tanh has saturated at this resolution."""
    half = 1
    while round(spec.TANH_PEAK * np.tanh(half * 2.0 ** -step_bits)) < spec.TANH_PEAK:
        half += 1
    j = np.arange(-half, half + 1, dtype=np.float64)
    return np.rint(spec.TANH_PEAK * np.tanh(j * 2.0 ** -step_bits)).astype(np.int16), half


def _exponents(peak: np.ndarray, limit: float, bias: np.ndarray, what: str) -> np.ndarray:
    """Per unit, the largest e with ``peak * 2^e <= limit`` and ``|bias| * 2^e <= BIAS_PEAK``, at most
    ``STEP_BITS + MAX_SHIFT``."""
    e = np.minimum(_largest_exponent(peak, limit), _largest_exponent(np.abs(bias), BIAS_PEAK))
    if (e < STEP_BITS).any():
        raise NotExactable(f"{what}: weights or biases too large for the exact form (|w| up to {peak.max():.3g}, "
                           f"|b| up to {np.abs(bias).max():.3g}); export with --form float")
    return e


def _largest_exponent(peak: np.ndarray, limit: float) -> np.ndarray:
    """Per unit, the largest e (at most ``STEP_BITS + MAX_SHIFT``) with ``peak * 2^e <= limit``."""
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(limit / np.where(peak > 0, peak, 1.0))).astype(np.int64)
    e = np.minimum(np.where(peak > 0, e, STEP_BITS + MAX_SHIFT), STEP_BITS + MAX_SHIFT)
    return e - (peak * np.exp2(e) > limit)  # log2 rounded up at a power of two


def _fits(values: np.ndarray, dtype, what: str) -> np.ndarray:
    """``values`` as ``dtype``, refused (not wrapped round) where one does not fit."""
    info = np.iinfo(dtype)
    if values.size and (values.min() < info.min or values.max() > info.max):
        raise NotExactable(f"{what}: values beyond {np.dtype(dtype).name}; export with --form float")
    return values.astype(dtype)


def _index_bias(bias: np.ndarray, shift: np.ndarray, half: int) -> np.ndarray:
    """The stored bias: the bias on the layer's scale, plus the tanh index's offset ``N << shift``
    and rounding half, so that ``(sum + stored) >> shift`` is the table index, 0..2N once clipped."""
    rounding = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    return bias + (half << shift) + rounding


def _first_layer(embed: np.ndarray, weight: np.ndarray, bias: np.ndarray, context_size: int, half: int):
    vocab, dim = embed.shape
    hidden = weight.shape[0]
    if weight.shape[1] != context_size * dim:
        raise NotExactable("the first layer does not read context_size embeddings")
    by_position = weight.astype(np.float64).reshape(hidden, context_size, dim)
    tables = np.einsum("vk,hck->cvh", embed.astype(np.float64), by_position).reshape(context_size * vocab, hidden)
    e = _exponents(np.abs(tables).max(axis=0), TABLE_PEAK, bias.astype(np.float64), "first layer")
    q = np.rint(tables * np.exp2(e))
    b = np.rint(bias.astype(np.float64) * np.exp2(e)).astype(np.int64)
    shift = e - STEP_BITS
    return q, _index_bias(b, shift, half), np.exp2(-shift)


def _hidden_layer(weight: np.ndarray, bias: np.ndarray, half: int, layer: int):
    """A later hidden layer reading 255 * tanh: int8 weights (in, out) on 2^(6 + s) / 255 per unit."""
    w = weight.astype(np.float64)
    e = _exponents(np.abs(w).max(axis=1) / spec.TANH_PEAK, WEIGHT_PEAK, bias.astype(np.float64),
                   f"hidden layer {layer}")
    q = np.rint(w * (np.exp2(e) / spec.TANH_PEAK)[:, None])
    b = np.rint(bias.astype(np.float64) * np.exp2(e)).astype(np.int64)
    shift = e - STEP_BITS
    return q.T, _index_bias(b, shift, half), np.exp2(-shift)


def _output_layer(weight: np.ndarray, bias: np.ndarray):
    """(int8 weights (in, vocab), bias, multipliers): logit of id k = (sum + bias) * m_k * 2^-32 nats."""
    w = weight.astype(np.float64)
    peak = np.abs(w).max(axis=1)  # (vocab,)
    unit = 2.0 ** -(spec.LOGIT_SHIFT + spec.LOGIT_BITS)
    # the weights' scale, coarser where the bias would pass BIAS_PEAK steps of it
    step = np.maximum(peak / (WEIGHT_PEAK * spec.TANH_PEAK), np.abs(bias.astype(np.float64)) / BIAS_PEAK)
    multipliers = np.maximum(1, np.rint(step / unit)).astype(np.int64)
    if multipliers.max() >= MAX_MULTIPLIER:
        raise NotExactable(f"output weights or biases too large for the exact form (|w| up to {peak.max():.3g}, "
                           f"|b| up to {np.abs(bias).max():.3g}); export with --form float")
    step = multipliers * unit * spec.TANH_PEAK  # the real weight of one integer step, per id
    q = np.clip(np.rint(w / step[:, None]), -WEIGHT_PEAK, WEIGHT_PEAK)
    b = np.rint(bias.astype(np.float64) / (multipliers * unit)).astype(np.int64)
    return q.T, b, multipliers


def exact_graph(arrays: dict[str, np.ndarray], meta: ModelMeta, half: int, extra: dict[str, np.ndarray],
                opset: int):
    """The ONNX model of ``runtime.exact.graph_nodes``: int64 context (batch, context_size) -> float32
    integers (batch, members, vocab). ``extra``: initializers kept in the file for reading only (the
    embedding tables)."""
    from onnx import TensorProto, helper, numpy_helper

    config, vocab = meta.model, len(meta.vocab)
    nodes = [helper.make_node(op, list(inputs), [output], name=output, **attrs)
             for op, inputs, output, attrs in spec.graph_nodes(len(config.hidden))]
    consts = spec.graph_constants(context_size=config.context_size, vocab_size=vocab, members=config.members,
                                  hidden=config.hidden, tanh_entries=2 * half + 1)
    initializers = [numpy_helper.from_array(v, k) for k, v in {**arrays, **consts, **extra}.items()]
    graph = helper.make_graph(
        nodes, "nametool-exact",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.INT64, ["batch", config.context_size])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", config.members, vocab])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="nametool")
    model.ir_version = 8
    return model


def exact_form(arrays: dict[str, np.ndarray], multipliers: np.ndarray, meta: ModelMeta) -> ExactForm:
    """The metadata section, after checking every partial-sum bound; raises NotExactable past 2^24."""
    config = meta.model
    bounds = spec.partial_sum_bounds(arrays, context_size=config.context_size, vocab_size=len(meta.vocab),
                                     members=config.members, hidden=config.hidden)
    for layer, bound in bounds.items():
        if bound >= spec.PARTIAL_SUM_LIMIT:
            raise NotExactable(f"exact form: a partial sum of {layer} can reach {bound:,}, not below 2^24; "
                               "export with --form float")
    if int(multipliers.max()) * bounds["output"] >= 1 << 52:
        raise NotExactable("exact form: the output logits' rescaling would pass 2^52; export with --form float")
    table = spec.make_exp_table()
    return ExactForm(STEP_BITS, tuple(int(v) for v in table),
                     tuple(tuple(int(v) for v in row) for row in multipliers), bounds)
