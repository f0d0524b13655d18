"""The engine's names follow the documented sampling rules, checked against an independent oracle.

The sampler's own tests take their expected distributions from ``next_char_probs``,
which ``draw`` itself calls, so a mistake there passes them. Here the rules are
written a second time, from the README and in plain Python, sharing no code with
the runtime: per character the end token is masked below min-len, then temperature
(0 is greedy), then top-k, then top-p (the smallest most-likely set whose mass
reaches p); a name that reaches max-len ends there; the prefix seeds the context
and counts toward both lengths. Enumerating every name up to max-len gives the
exact probability of each whole name, which tens of thousands of names from the
engine must match.
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from nametool.runtime import generation

from .conftest import make_meta

CHARS = "abc"
END = 0  # the end token's id; CHARS[i] has id i + 1
CONTEXT_SIZE = 3
MAX_LEN = 5  # the model's default: 3 + 9 + 27 + 81 + 243 possible names
META = make_meta(chars=tuple(CHARS), context_size=CONTEXT_SIZE, min_len=1, max_len=MAX_LEN)

# Logits after a context ending in ids (a, b): TABLE[a, b]. Random but fixed, with no ties
# in a row (a tie would make top-k and greedy depend on a tie rule the README leaves open),
# several near-ties (where top-k and top-p cut between close neighbours) and the end a
# little less likely than a letter, so most names run several characters.
TABLE = np.random.default_rng(12).normal(size=(4, 4, 4)).astype(np.float32)
TABLE[:, :, END] -= np.float32(0.3)


def table_model(contexts: np.ndarray) -> np.ndarray:
    """(batch, CONTEXT_SIZE) int64 -> (batch, 4) float32. Reads two ids so the sliding matters."""
    return TABLE[contexts[:, -2], contexts[:, -1]]


def uniform_model(contexts: np.ndarray) -> np.ndarray:
    """Every id equally likely: probabilities of exactly 1/4, so top-p can meet its boundary exactly."""
    return np.zeros((len(contexts), 4), dtype=np.float32)


# The oracle: one name at a time, plain Python floats, nothing from nametool.runtime.

@dataclass(frozen=True)
class Rules:
    """The options of a request, with the defaults META gives them."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    exclude: tuple[str, ...] = ()
    min_len: int = 1
    max_len: int = MAX_LEN
    prefix: str = ""


def step_probs(logits: list[float], rules: Rules, end_allowed: bool, text: str = "") -> dict[int, float]:
    """P(next id) by the README's adjustments, in its order; an id left out has probability 0.

    A letter that would make ``text`` end with an excluded word is masked with the end.
    """
    def completes(i: int) -> bool:
        return i != END and any((text + CHARS[i - 1]).endswith(word) for word in rules.exclude)

    ids = [i for i in range(len(logits)) if (end_allowed or i != END) and not completes(i)]
    if rules.temperature == 0:
        return {max(ids, key=lambda i: logits[i]): 1.0}
    top = max(logits[i] for i in ids)
    weight = {i: math.exp((logits[i] - top) / rules.temperature) for i in ids}
    ranked = sorted(ids, key=lambda i: -weight[i])  # stable: of equal weights the lower id ranks first
    if rules.top_k is not None:
        ranked = ranked[:rules.top_k]
    total = sum(weight[i] for i in ranked)
    probs = {i: weight[i] / total for i in ranked}
    if rules.top_p is not None:
        nucleus, mass = {}, 0.0
        for i in ranked:
            nucleus[i] = probs[i]
            mass += probs[i]
            if mass >= rules.top_p:  # this id makes the set reach p: it is the last one kept
                break
        probs = {i: p / mass for i, p in nucleus.items()}
    if rules.min_p:  # last: keep what is at least min-p times as likely as the most likely
        floor = rules.min_p * max(probs.values())
        kept = {i: p for i, p in probs.items() if p >= floor}
        probs = {i: p / sum(kept.values()) for i, p in kept.items()}
    return probs


@functools.cache
def model_row(model, context: tuple[int, ...]) -> list[float]:
    return model(np.array([context], dtype=np.int64))[0].tolist()


def next_probs(model, rules: Rules, ids: list[int]) -> dict[int, float]:
    """The step after ``ids`` (prefix included): the context is the last ids, padded with the end."""
    context = tuple(([END] * CONTEXT_SIZE + ids)[-CONTEXT_SIZE:])
    return step_probs(model_row(model, context), rules, end_allowed=len(ids) >= rules.min_len, text=decode(ids))


def encode(text: str) -> list[int]:
    return [CHARS.index(c) + 1 for c in text]


def decode(ids: list[int]) -> str:
    return "".join(CHARS[i - 1] for i in ids)


def oracle_sample(model, rules: Rules, rng: random.Random) -> str:
    """One name, drawn character by character."""
    ids = encode(rules.prefix)
    while len(ids) < rules.max_len:  # at max-len the name ends without a draw
        probs = next_probs(model, rules, ids)
        (i,) = rng.choices(list(probs), weights=list(probs.values()))
        if i == END:
            break
        ids.append(i)
    return decode(ids)


def oracle_distribution(model, rules: Rules) -> dict[str, float]:
    """The exact probability of every name the rules can produce, by walking every path."""
    names: dict[str, float] = {}

    def walk(ids: list[int], mass: float) -> None:
        if len(ids) == rules.max_len:
            names[decode(ids)] = mass
            return
        for i, p in next_probs(model, rules, ids).items():
            if i == END:
                names[decode(ids)] = mass * p
            else:
                walk(ids + [i], mass * p)

    walk(encode(rules.prefix), 1.0)
    return names


# Comparing a sample of names with the exact distribution.

# The seed is fixed, so each comparison is deterministic; the tiny tail of Z_LIMIT only
# keeps a legitimate change of the random stream (another draw layout) from tripping it.
# Power: a sampler whose name probabilities are q instead of p adds about
# COUNT * sum((q - p)**2 / p) over the bins to the statistic, and for the at most 364
# bins here the limit lies less than 145 above its mean. So any error whose chi-square
# divergence exceeds 0.004 fails: 1% of all names moved onto a name of probability 0.02
# is enough, and so is any total variation distance above 0.035 between the binned
# distributions, whatever its shape.
COUNT = 40_000  # names per option set
Z_LIMIT = 4.75  # one-sided normal tail of 1e-6


def chi_square_z(names: list[str], probs: dict[str, float]) -> float:
    """Pearson's statistic over names as a Wilson-Hilferty z-score, ~ N(0, 1) when ``names`` follow ``probs``.

    Names expected only a few times share one pooled bin, where the chi-square
    approximation still holds; the support check catches a name that should never appear.
    """
    counts, n = Counter(names), len(names)
    observed, expected, pooled_o, pooled_e = [], [], 0, 0.0
    for name, p in probs.items():
        if n * p >= 5:
            observed.append(counts[name])
            expected.append(n * p)
        else:
            pooled_o += counts[name]
            pooled_e += n * p
    if pooled_e > 0:
        observed.append(pooled_o)
        expected.append(pooled_e)
    df = len(expected) - 1
    stat = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    return ((stat / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))


def engine_names(model, options: dict, count: int = COUNT, seed: int = 2024) -> list[str]:
    request = generation.Request(count=count, **options)
    return generation.generate(model, META, request, generation.make_rng(seed))


CASES = {
    "plain": {},
    "cool": {"temperature": 0.7},
    "hot": {"temperature": 1.6},
    "top-k": {"top_k": 2},
    "narrow top-p": {"top_p": 0.6},
    "wide top-p": {"top_p": 0.9},
    "lengths": {"min_len": 3, "max_len": 4},
    "prefix": {"prefix": "b", "max_len": 6},
    "prefix counts toward min-len": {"prefix": "ca", "min_len": 4, "max_len": 6},
    "everything": {"temperature": 1.3, "top_k": 3, "top_p": 0.75, "min_len": 2, "max_len": 6, "prefix": "c"},
    # top-k renormalises before top-p: after the cut to two, the first may alone reach p
    "top-k then top-p": {"temperature": 0.8, "top_k": 2, "top_p": 0.6, "min_len": 2},
    "min-p": {"min_p": 0.3},
    "excluded words": {"exclude": ("ab", "ca", "bbb"), "max_len": 6},
    "excluded words, prefix and top-k": {"exclude": ("bc", "aa"), "prefix": "a", "top_k": 2, "min_len": 3},
    "hot, top-p then min-p": {"temperature": 1.5, "top_p": 0.9, "min_p": 0.25, "min_len": 2},
}


@functools.cache
def case_names(case: str) -> list[str]:
    return engine_names(table_model, CASES[case])


@pytest.mark.parametrize("case", CASES)
def test_engine_names_follow_the_oracle_distribution(case):
    probs = oracle_distribution(table_model, Rules(**CASES[case]))
    names = case_names(case)
    impossible = sorted(set(names) - {name for name, p in probs.items() if p > 0})
    assert not impossible, f"names the rules give probability 0: {impossible[:10]}"
    z = chi_square_z(names, probs)
    assert z < Z_LIMIT, f"z = {z:.1f}: the names do not follow the rules"


@pytest.mark.parametrize("options", [{"temperature": 0, "min_len": 3},
                                     {"temperature": 0, "prefix": "b", "top_k": 2, "top_p": 0.3}])
def test_temperature_zero_always_gives_the_oracle_greedy_name(options):
    (greedy,) = oracle_distribution(table_model, Rules(**options))
    assert set(engine_names(table_model, options, count=2000)) == {greedy}


@pytest.mark.parametrize("top_p, kept", [(0.5, 2), (0.5 + 1e-9, 3), (0.75, 3), (1.0, 4)])
def test_top_p_keeps_the_id_whose_mass_reaches_p_exactly_and_no_more(top_p, kept):
    """Four ids of exactly 1/4 after the prefix: the two most likely reach 0.5 exactly.

    Which of the tied ids survive is not documented, so only the number of names is compared.
    """
    options = {"prefix": "a", "max_len": 2, "top_p": top_p}
    support = oracle_distribution(uniform_model, Rules(**options))
    assert len(support) == kept
    assert len(set(engine_names(uniform_model, options, count=400))) == kept


@pytest.mark.parametrize("min_p, kept", [(1.0, 4), (0.5, 4)])
def test_min_p_keeps_ids_as_likely_as_the_most_likely_times_p(min_p, kept):
    """Four ids of exactly 1/4: each is as likely as the most likely, so min-p up to 1 keeps all."""
    options = {"prefix": "a", "max_len": 2, "min_p": min_p}
    assert len(oracle_distribution(uniform_model, Rules(**options))) == kept
    assert len(set(engine_names(uniform_model, options, count=400))) == kept


@pytest.mark.parametrize("case, wrong", [
    ("plain", {"temperature": 1.1}),
    ("min-p", {"min_p": 0.35}),
    ("everything", {**CASES["everything"], "top_p": 0.7}),
    ("lengths", {"min_len": 3, "max_len": 5}),
])
def test_the_check_rejects_names_from_slightly_different_rules(case, wrong):
    """The comparison has power: the engine's names fail against a neighbouring rule set."""
    assert chi_square_z(case_names(case), oracle_distribution(table_model, Rules(**wrong))) > Z_LIMIT


def test_the_oracle_sampler_passes_against_its_own_enumeration():
    """The one-name-at-a-time reference and the enumeration agree, and a correct sampler
    with another random stream passes the check: the limit is not tuned to one seed."""
    rules = Rules(**CASES["everything"])
    rng = random.Random(7)
    names = [oracle_sample(table_model, rules, rng) for _ in range(COUNT // 2)]
    assert chi_square_z(names, oracle_distribution(table_model, rules)) < Z_LIMIT


def test_the_table_has_no_ties_in_a_row():
    assert all(len(set(row.tolist())) == len(row) for row in TABLE.reshape(-1, 4))


def restricted(probs: dict[str, float], keep) -> dict[str, float]:
    """The distribution conditioned on ``keep(name)``: the model's, restricted and renormalised."""
    kept = {name: p for name, p in probs.items() if keep(name)}
    total = sum(kept.values())
    return {name: p / total for name, p in kept.items()}


@pytest.mark.parametrize("options, keep", [
    ({"suffix": "b"}, lambda name: name.endswith("b")),
    ({"suffix": "ca", "max_len": 6}, lambda name: name.endswith("ca")),
    ({"contains": "bb"}, lambda name: "bb" in name),
    ({"contains": "c", "suffix": "a", "temperature": 1.3}, lambda name: "c" in name and name.endswith("a")),
])
def test_suffix_and_contains_keep_the_models_distribution_restricted_to_them(options, keep):
    """Exact: P(name | constraint) = P(name) / P(constraint), by enumeration; masking would skew it."""
    rules = Rules(**{k: v for k, v in options.items() if k not in ("suffix", "contains")})
    probs = restricted(oracle_distribution(table_model, rules), keep)
    names = engine_names(table_model, options, count=20_000)
    assert all(keep(name) for name in names)
    assert not set(names) - set(probs)
    assert chi_square_z(names, probs) < Z_LIMIT


def test_masking_toward_a_suffix_would_be_caught():
    """The check has power here too: names that merely end in 'b' by forcing, not by the model."""
    skewed = [name[:-1] + "b" if name else "b" for name in engine_names(table_model, {}, count=20_000)]
    probs = restricted(oracle_distribution(table_model, Rules()), lambda name: name.endswith("b"))
    assert chi_square_z(skewed, probs) > Z_LIMIT
