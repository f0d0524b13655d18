"""The sampler: it draws from the model's (adjusted) distribution, honours every constraint."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nametool.runtime.errors import RequestError
from nametool.runtime.generation import Request, generate, plan
from nametool.runtime.sampling import draw, keep_top_k, keep_top_p, next_char_probs, sample_ids

from .conftest import make_meta

LOGITS = np.array([0.3, 2.0, -1.0, 1.2, 0.0, -0.5, 1.7, 0.9, -2.0, 0.5])  # a fixed 10-way distribution


def chi_square_critical(df: int, z: float = 3.09) -> float:
    """Upper 0.1% point of chi-square(df), Wilson-Hilferty approximation (z = 3.09)."""
    return df * (1 - 2 / (9 * df) + z * np.sqrt(2 / (9 * df))) ** 3


def chi_square(counts: np.ndarray, probs: np.ndarray) -> tuple[float, int]:
    """Statistic and degrees of freedom; bins expecting fewer than 5 draws are pooled."""
    expected = probs / probs.sum() * counts.sum()
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    obs, exp = obs[exp > 0], exp[exp > 0]
    return float(((obs - exp) ** 2 / exp).sum()), len(exp) - 1


def draws(n: int, seed: int, **options) -> np.ndarray:
    uniforms = np.random.default_rng(seed).random(n)
    ids = draw(np.tile(LOGITS, (n, 1)).astype(np.float32), uniforms, **options)
    return np.bincount(ids, minlength=len(LOGITS))


def adjusted(logits, temperature=1.0, top_k=None, top_p=None, forbid=None) -> np.ndarray:
    """P(id) by the documented rules in plain Python, not by ``next_char_probs`` (which ``draw`` calls):
    the forbidden id masked, then temperature, then top-k, then the smallest most-likely set reaching top-p."""
    ids = [i for i in range(len(logits)) if i != forbid]
    top = max(logits[i] for i in ids)
    weight = {i: math.exp((logits[i] - top) / temperature) for i in ids}
    ranked = sorted(ids, key=lambda i: -weight[i])[:top_k]
    total = sum(weight[i] for i in ranked)
    probs = {i: weight[i] / total for i in ranked}
    if top_p is not None:
        kept, mass = [], 0.0
        for i in ranked:
            kept.append(i)
            mass += probs[i]
            if mass >= top_p:
                break
        probs = {i: probs[i] / mass for i in kept}
    return np.array([probs.get(i, 0.0) for i in range(len(logits))])


def test_the_reference_distribution_by_hand():
    """Three logits ln 1, ln 2, ln 5: probabilities 0.125, 0.25, 0.625 before any cut."""
    logits = [0.0, math.log(2), math.log(5)]
    assert np.allclose(adjusted(logits), [0.125, 0.25, 0.625])
    assert np.allclose(adjusted(logits, top_k=2), [0, 2 / 7, 5 / 7])
    assert np.allclose(adjusted(logits, top_p=0.7), [0, 2 / 7, 5 / 7])  # 0.625 < 0.7 <= 0.875
    assert np.allclose(adjusted(logits, temperature=0.5), [1 / 30, 4 / 30, 25 / 30])
    assert np.allclose(adjusted(logits, forbid=2), [1 / 3, 2 / 3, 0])


@pytest.mark.parametrize(
    "options",
    [{}, {"temperature": 0.5}, {"temperature": 2.0}, {"top_k": 4}, {"top_p": 0.8},
     {"temperature": 1.5, "top_k": 6, "top_p": 0.9}, {"forbid": 1}],
)
def test_empirical_frequencies_match_the_adjusted_distribution(options):
    counts = draws(40_000, seed=11, **options)
    probs = adjusted(LOGITS.tolist(), **options)
    assert counts[probs == 0].sum() == 0  # nothing outside the support
    stat, df = chi_square(counts, probs)
    assert stat < chi_square_critical(df)


def test_chi_square_check_catches_the_wrong_temperature():
    stat, df = chi_square(draws(40_000, seed=11, temperature=1.3), adjusted(LOGITS.tolist()))
    assert stat > chi_square_critical(df)


def test_plain_draws_equal_the_reference_inverse_cdf():
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5000, 27)).astype(np.float32) * 3
    uniforms = rng.random(5000)
    fast = draw(logits, uniforms, temperature=0.8)
    reference = sample_ids(next_char_probs(logits, 0.8), uniforms)
    assert (fast == reference).mean() > 0.999  # float32 vs float64 may split a hair-width boundary


def test_temperature_zero_is_argmax():
    assert next_char_probs(np.array([[1.0, 3.0, 2.0]]), 0).tolist() == [[0, 1, 0]]
    assert draw(np.array([[1.0, 3.0, 2.0]]), np.array([0.99]), temperature=0).tolist() == [1]


def test_sample_ids_inverts_the_cdf_and_never_draws_zero_mass():
    probs = np.array([[0.5, 0.25, 0.25, 0.0]] * 5)
    assert sample_ids(probs, np.array([0.0, 0.49, 0.5, 0.999, 1 - 1e-17])).tolist() == [0, 0, 1, 2, 2]


logit_rows = arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(2, 30)),
                    elements=st.floats(-20, 20, allow_nan=False), unique=True)


@settings(max_examples=60, deadline=None)
@given(logits=logit_rows, k=st.integers(1, 30), seed=st.integers(0, 2**32 - 1))
def test_top_k_only_returns_the_k_most_likely(logits, k, seed):
    k = min(k, logits.shape[1])
    ids = draw(logits, np.random.default_rng(seed).random(len(logits)), top_k=k)
    top = np.argsort(-logits, axis=1)[:, :k]
    assert all(i in row for i, row in zip(ids, top))
    assert (np.isfinite(keep_top_k(logits, k)).sum(axis=1) == k).all()


@settings(max_examples=60, deadline=None)
@given(logits=logit_rows, min_p=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_min_p_draws_only_ids_at_least_min_p_times_the_most_likely(logits, min_p, seed):
    full = np.exp(logits - logits.max(axis=1, keepdims=True))
    full /= full.sum(axis=1, keepdims=True)  # softmax written here, not next_char_probs
    ids = draw(logits, np.random.default_rng(seed).random(len(logits)), min_p=min_p)
    chosen = full[np.arange(len(ids)), ids]
    assert (chosen >= min_p * full.max(axis=1) * (1 - 1e-9)).all()
    kept, floor = next_char_probs(logits, min_p=min_p) > 0, min_p * full.max(axis=1, keepdims=True)
    assert (full[kept] >= (floor * (1 - 1e-9)).repeat(full.shape[1], axis=1)[kept]).all()  # nothing below
    assert kept[full > floor * (1 + 1e-9)].all()  # everything clearly above stays
    assert kept[np.arange(len(ids)), full.argmax(axis=1)].all()  # the most likely always stays


@settings(max_examples=60, deadline=None)
@given(logits=logit_rows, p=st.floats(0.01, 0.99))
def test_top_p_keeps_the_smallest_set_reaching_p(logits, p):
    probs = next_char_probs(logits)
    kept = keep_top_p(probs, p)
    for full, row in zip(probs, kept):
        chosen = row > 0
        assert np.allclose(row[chosen], full[chosen])
        assert full[chosen].sum() >= p - 1e-12  # reaches p
        smallest = full[chosen].min()
        assert full[chosen].sum() - smallest < p + 1e-12  # and no smaller most-likely set does
        assert full[~chosen].max(initial=0) <= smallest  # the most likely ones


# The engine on a hand-made model: uniform over a, b, c and the end.

META = make_meta(chars="abc", context_size=2, min_len=1, max_len=9, known=["ab", "ba", "abc"])


def uniform_logits(contexts):
    return np.zeros((len(contexts), 4), dtype=np.float32)


def run(count=20, seed=0, **options):
    return generate(uniform_logits, META, Request(count=count, **options), np.random.default_rng(seed))


@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 40), min_len=st.integers(1, 5), extra=st.integers(0, 5),
       prefix=st.text(alphabet="abc", max_size=4), temperature=st.floats(0, 3),
       seed=st.integers(0, 2**32 - 1))
def test_names_respect_bounds_prefix_and_vocabulary(count, min_len, extra, prefix, temperature, seed):
    max_len = max(min_len + extra, len(prefix))
    names = run(count, seed, min_len=min_len, max_len=max_len, prefix=prefix, temperature=temperature)
    assert len(names) == count
    for name in names:
        assert max(min_len, len(prefix)) <= len(name) <= max_len
        assert name.startswith(prefix) and set(name) <= set("abc")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 50), top_k=st.sampled_from([None, 2]))
def test_same_seed_same_names_whatever_the_batch_size(seed, batch, top_k):
    assert run(60, seed, batch_size=batch, top_k=top_k) == run(60, seed, batch_size=1024, top_k=top_k)


def test_an_impossible_end_token_still_stops_at_max_len():
    def never_end(contexts):
        logits = np.zeros((len(contexts), 4), dtype=np.float32)
        logits[:, 0] = -1e9
        return logits

    names = generate(never_end, META, Request(count=10, max_len=6), np.random.default_rng(0))
    assert [len(n) for n in names] == [6] * 10


def test_min_len_masks_the_end_token():
    names = run(200, min_len=4, max_len=9)
    assert min(map(len, names)) == 4  # uniform model ends often: the mask is what holds


def test_unique_and_novel():
    names = run(30, seed=1, unique=True, novel=True, max_len=4)
    assert len(set(names)) == 30 and not {"ab", "ba", "abc"} & set(names)


def test_unique_that_cannot_be_met_fails_fast():
    with pytest.raises(RequestError, match="found only 3 unique names of the 5 asked for"):
        run(5, unique=True, min_len=1, max_len=1)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"count": -1}, "count -1 is negative"),
        ({"temperature": -0.5}, "temperature -0.5 must be"),
        ({"temperature": float("nan")}, "temperature nan must be"),
        ({"top_k": 0}, "top-k 0 must be at least 1"),
        ({"top_p": 0.0}, r"top-p 0.0 must be in \(0, 1\]"),
        ({"top_p": 1.5}, r"top-p 1.5 must be in \(0, 1\]"),
        ({"min_len": 0}, "min-len 0 must be at least 1"),
        ({"min_len": 5, "max_len": 4}, "max-len 4 is below min-len 5"),
        ({"prefix": "abcab", "max_len": 4}, "prefix 'abcab' is longer than max-len 4"),
        ({"prefix": "aXz"}, "prefix 'aXz': 'X', 'z' not in the vocabulary"),
        ({"batch_size": 0}, "batch size 0"),
    ],
)
def test_impossible_requests_are_refused(options, message):
    with pytest.raises(RequestError, match=message):
        plan(Request(**options), META)


def test_novel_needs_known_names_in_the_file():
    with pytest.raises(RequestError, match="carries no training names"):
        plan(Request(novel=True), make_meta())


# Rows whose contexts are equal share one model call.

def table_logits(vocab_size: int, context_size: int):
    """A model whose logits depend on every context position, computed row by row (exact in any batch)."""
    table = np.random.default_rng(5).normal(size=(context_size, vocab_size, vocab_size)).astype(np.float32)

    def logits(contexts):
        return sum(table[i][contexts[:, i]] for i in range(context_size))

    return logits


def without_sharing(monkeypatch):
    from nametool.runtime import generation

    monkeypatch.setattr(generation, "SHARE_UNTIL", 0)


@pytest.mark.parametrize("chars, context_size", [("abc", 2), ("abc", 5), ([chr(0x100 + i) for i in range(300)], 3)])
@pytest.mark.parametrize("prefix_len, max_len, options", [
    (0, 9, {}), (2, 9, {"min_len": 4}), (0, 9, {"temperature": 0.7, "top_k": 2}), (0, 14, {"top_p": 0.8}),
])
def test_shared_contexts_give_the_names_unshared_calls_give(chars, context_size, prefix_len, max_len, options,
                                                            monkeypatch):
    meta = make_meta(chars=chars, context_size=context_size, max_len=max_len)
    request = Request(count=500, batch_size=256, prefix="".join(chars[:prefix_len]), **options)
    fn = table_logits(len(meta.vocab), context_size)
    shared = generate(fn, meta, request, np.random.default_rng(3))
    without_sharing(monkeypatch)
    assert generate(fn, meta, request, np.random.default_rng(3)) == shared


def test_equal_contexts_are_computed_once():
    calls = []
    fn = table_logits(4, 2)
    names = generate(lambda c: calls.append(len(c)) or fn(c), make_meta(chars="abc", context_size=2, max_len=9),
                     Request(count=1000, batch_size=1000), np.random.default_rng(0))
    assert calls[:2] == [1, 3]  # the empty context once, then one per first letter
    assert sum(calls) < sum(len(n) + 1 for n in names) / 2


def test_keys_stop_before_int64_overflows():
    from nametool.runtime import generation

    assert generation._exact_key_steps(27) == 13  # 27**13 < 2**63 <= 27**14
    assert generation._exact_key_steps(3000) == 5
    assert generation._exact_key_steps(1) == generation.MAX_NAME_LEN


def test_sharing_stops_where_the_keys_could_overflow():
    """300 characters: a key holds 7 ids below 2**63. With top-k 2, rows stay few but keep
    growing apart; from the 8th position on every row must get its own model row."""
    from nametool.runtime import generation

    chars = [chr(0x100 + i) for i in range(300)]
    meta = make_meta(chars=chars, context_size=3, min_len=12, max_len=12)
    assert generation._exact_key_steps(len(meta.vocab)) == 7
    calls, fn = [], table_logits(len(meta.vocab), 3)
    generate(lambda c: calls.append(len(c)) or fn(c), meta, Request(count=500, batch_size=500, top_k=2),
             np.random.default_rng(0))
    assert len(calls) == 12
    assert all(n <= 2 ** i for i, n in enumerate(calls[:7]))  # shared: at most 2**i distinct rows
    assert calls[7:] == [500] * 5


@pytest.mark.parametrize("space", [1, 27, 729, 19683, 27 ** 6])  # a marked table, and at 27**6 a sort
def test_distinct_keys_are_what_np_unique_finds(space):
    from nametool.runtime import generation

    keys = np.random.default_rng(space).integers(0, space, 4096)
    first, inverse = generation._distinct(keys, space)
    _, _, expected = np.unique(keys, return_index=True, return_inverse=True)
    assert np.array_equal(inverse, expected)
    assert np.array_equal(keys[first][inverse], keys)  # each first names a row of its key


@pytest.mark.parametrize("options", [{}, {"temperature": 0.7, "forbid": 0}, {"top_k": 3}, {"top_p": 0.8},
                                     {"min_p": 0.1, "forbid": 2}, {"temperature": 0}])
def test_drawing_from_shared_rows_is_drawing_from_the_expanded_rows(options):
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, (40, 10)).astype(np.float32)
    rows = rng.integers(0, 40, 3000)
    uniforms = rng.random(3000)
    shared = draw(logits, uniforms, rows=rows, **options)
    assert np.array_equal(shared, draw(logits[rows], uniforms, **options))
    assert len(np.unique(shared)) > 1 or options.get("temperature") == 0


def test_a_bad_shared_row_is_reported_at_the_first_uniform_that_reads_it():
    from nametool.runtime.sampling import UnusableLogits

    logits = np.zeros((3, 4), dtype=np.float32)
    logits[2, 1] = np.nan
    with pytest.raises(UnusableLogits) as found:
        draw(logits, np.full(5, 0.5), rows=np.array([0, 1, 0, 2, 2]))
    assert found.value.row == 3
