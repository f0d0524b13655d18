"""Sampling math on a batch of logits: masking, temperature, top-k, top-p, min-p, inverse-CDF draws.

Pure numpy and stateless: randomness arrives as uniforms drawn by the caller
from the injected stream (``uniforms.UniformStream``). The runtime and the PyTorch
reference path both use these functions, so they cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from nametool.runtime.errors import ModelFileError

# Below this a temperature underflows float32 arithmetic; such draws take the float64 path.
FLOAT32_SAFE_TEMPERATURE = 1e-30
# EXP_NOTE: the float32 draw takes exp in float64 and rounds it once. numpy's float32 exp
# (its AVX-512/AVX2 code) differed from the correctly rounded value in 39% of a million
# inputs, while ARM's libm and JavaScript's Math.exp round (almost) correctly: a CDF that
# differs in its last bits between devices moves the boundaries a uniform is compared with.
# Rounded from float64, every platform gets the same float32 unless the float64 results
# straddle a rounding boundary (about 1 in 10^9). numpy's buffered casting does it in one
# pass: 140 us for 27 x 4,096 values against 590 us for astype-then-exp, 51 us in float32
# (2-core Xeon with AVX-512; numpy without AVX-512 takes libm's scalar float64 exp, likely slower).


class UnusableLogits(ModelFileError):
    """A row with no distribution to draw from: NaN or +inf in it, or -inf for every allowed id."""

    def __init__(self, row: int, value: float):
        self.row, self.value = row, value
        what = "every allowed id has logit -inf" if value == -np.inf else f"its logits hold {value}"
        super().__init__(f"logits row {row}: {what}")


def check_rows(row_max: np.ndarray) -> None:
    """Refuse rows whose largest allowed logit is not finite.

    One check on the row maxima finds every bad row: max propagates NaN and +inf,
    and is -inf only when every id is -inf. Without it ``inf - inf`` turns the row
    into NaN and the inverse-CDF draw returns id 0 (the end) even when it is forbidden.
    """
    bad = ~np.isfinite(row_max)
    if bad.any():
        row = int(bad.argmax())
        raise UnusableLogits(row, float(row_max[row]))


def next_char_probs(
    logits: np.ndarray, temperature: float = 1.0, *, top_k: int | None = None, top_p: float | None = None,
    min_p: float | None = None,
) -> np.ndarray:
    """Sampling distribution per row: softmax of ``logits / temperature``, then top-k, then top-p,
    then min-p (ids below ``min_p`` times the row's largest probability are dropped).

    Temperature 0 puts all mass on the argmax. Rows need not be renormalised after
    top-k/top-p: :func:`sample_ids` scales by each row's total.
    """
    logits = np.asarray(logits, dtype=np.float64)  # (batch, vocab)
    top = logits.max(axis=1, keepdims=True)  # top-k keeps it: the largest logit survives
    check_rows(top[:, 0])
    if temperature == 0:
        probs = np.zeros_like(logits)
        probs[np.arange(len(logits)), logits.argmax(axis=1)] = 1.0
        return probs
    if top_k is not None and top_k < logits.shape[1]:
        logits = keep_top_k(logits, top_k)
    scaled = logits - top  # <= 0 before dividing: no inf - inf
    scaled /= temperature
    probs = np.exp(scaled, out=scaled)
    probs /= probs.sum(axis=1, keepdims=True)
    if top_p is not None and top_p < 1:
        probs = keep_top_p(probs, top_p)
    if min_p:  # the most likely id always stays: min-p never empties a row
        probs[probs < min_p * probs.max(axis=1, keepdims=True)] = 0.0
    return probs


def keep_top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Set all but the ``k`` largest logits of each row to -inf (exactly ``k`` survive)."""
    keep = np.argpartition(-logits, k - 1, axis=1)[:, :k]  # (batch, k) ids, unordered
    out = np.full_like(logits, -np.inf)
    np.put_along_axis(out, keep, np.take_along_axis(logits, keep, axis=1), axis=1)
    return out


def keep_top_p(probs: np.ndarray, p: float) -> np.ndarray:
    """Zero all but the smallest most-likely set of each row whose mass reaches ``p``."""
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(probs, order, axis=1)
    before = np.cumsum(ranked, axis=1) - ranked  # mass of the more likely ids
    ranked[before >= p] = 0.0  # the id that crosses p is the last one kept
    out = np.empty_like(probs)
    np.put_along_axis(out, order, ranked, axis=1)
    return out


def sample_ids(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: for each row, the first id whose cumulative mass exceeds ``u * total``.

    ``probs`` need not sum to one. An id of zero mass is never drawn.
    """
    cdf = np.cumsum(probs, axis=1)  # (batch, vocab)
    total = cdf[:, -1]
    threshold = np.minimum(uniforms * total, np.nextafter(total, 0))  # u * total may round up to total
    return (cdf <= threshold[:, None]).sum(axis=1)


def draw(
    logits: np.ndarray,
    uniforms: np.ndarray,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
    forbid: int | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """One id per uniform from ``next_char_probs(logits, ...)``, with ``forbid`` (an id) masked out.

    ``rows``: uniform i draws from ``logits[rows[i]]`` (rows with one context share a row, whose
    distribution is then computed once); None: from ``logits[i]``. The ids are those of
    ``draw(logits[rows], ...)``.

    The plain case (temperature > 0, no top-k or top-p) is the hot loop of generation
    and runs transposed, ``(vocab, batch)``, so every reduction is a vector operation
    across the batch instead of a short loop per row; it draws what
    ``sample_ids(next_char_probs(...))`` draws, in float32.
    """
    plain = (temperature >= FLOAT32_SAFE_TEMPERATURE and top_k is None and (top_p is None or top_p == 1)
             and not min_p)
    if not plain:
        logits = np.array(logits if rows is None else logits[rows], dtype=np.float64)
        if forbid is not None:
            logits[:, forbid] = -np.inf
        return sample_ids(next_char_probs(logits, temperature, top_k=top_k, top_p=top_p, min_p=min_p), uniforms)
    x = np.array(logits.T, dtype=np.float32, order="C")  # (vocab, batch)
    if forbid is not None:
        x[forbid] = -np.inf
    top = x.max(axis=0)
    check_rows(top if rows is None else top[rows])  # names the uniform's row, as unshared
    x -= top
    if temperature != 1:
        x /= np.float32(temperature)
    np.exp(x, out=x, dtype=np.float64, casting="unsafe")  # in float64, rounded once to float32: EXP_NOTE
    for i in range(1, len(x)):  # cumulative sum down the vocabulary, a batch-wide add per id
        x[i] += x[i - 1]
    if rows is not None:
        x = x[:, rows]
    total = x[-1]
    threshold = np.minimum((uniforms * total).astype(np.float32), np.nextafter(total, np.float32(0)))
    # how many CDF entries lie at or below the threshold, counted in uint16 where the vocabulary
    # allows (2.4x faster than counting in intp: 23 against 56 us for 27 x 4,096 on the 2-core Xeon
    # with AVX-512; a narrower sum moves less memory on any CPU, not timed elsewhere)
    count = np.uint16 if len(x) <= np.iinfo(np.uint16).max else np.intp
    return (x <= threshold).view(np.uint8).sum(axis=0, dtype=count).astype(np.intp)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
