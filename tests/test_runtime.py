"""The runtime API: loading, checks against the graph, sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nametool.runtime import ModelFileError, NameModel, RequestError
from nametool.runtime.sampling import next_char_probs, sample_ids, sample_names
from nametool.runtime.schema import Vocab


def test_bundled_model_loads_and_generates():
    model = NameModel.load()
    names = model.generate(20, seed=0)
    assert len(names) == 20
    bounds = model.meta.sampling
    assert all(bounds.min_len <= len(n) <= bounds.max_len for n in names)
    assert all(set(n) <= set(model.vocab.chars) for n in names)


def test_same_seed_same_names_different_seed_different_names():
    model = NameModel.load()
    assert model.generate(50, seed=1) == model.generate(50, seed=1)
    assert model.generate(50, seed=1) != model.generate(50, seed=2)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_names_do_not_depend_on_the_batch_size(batch_size):
    model = NameModel.load()
    assert model.generate(40, seed=5, batch_size=batch_size) == model.generate(40, seed=5, batch_size=1024)


def test_next_char_distribution_is_sorted_and_sums_to_one():
    dist = NameModel.load().next_char_distribution("abi")
    probs = list(dist.values())
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0)
    assert set(dist) == {".", *NameModel.load().vocab.chars}


def test_context_outside_the_vocabulary_is_a_request_error():
    with pytest.raises(RequestError, match="'Z' not in the vocabulary"):
        NameModel.load().next_char_distribution("aZ")


def test_greedy_is_deterministic_whatever_the_seed():
    model = NameModel.load()
    assert model.generate(3, temperature=0, seed=1) == model.generate(3, temperature=0, seed=99)


def test_missing_file_and_foreign_onnx_are_clear_errors(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        NameModel.load(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not onnx")
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        NameModel.load(junk)


def test_onnx_file_without_our_metadata_is_refused(tmp_path, tiny_run):
    onnx = pytest.importorskip("onnx")
    _, onnx_path = tiny_run
    proto = onnx.load(str(onnx_path))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelFileError, match="without nametool metadata"):
        NameModel.load(bare)


# The sampler alone, on hand-made logits.

VOCAB = Vocab(chars=tuple("abc"))


def uniform_logits(contexts):
    return np.zeros((len(contexts), len(VOCAB)))


def test_sample_ids_inverts_the_cdf():
    probs = np.array([[0.5, 0.25, 0.25, 0.0]] * 4)
    assert sample_ids(probs, np.array([0.0, 0.49, 0.5, 0.999])).tolist() == [0, 0, 1, 2]


def test_temperature_zero_is_argmax():
    assert next_char_probs(np.array([[1.0, 3.0, 2.0]]), 0).tolist() == [[0, 1, 0]]


def test_an_impossible_end_token_still_stops_at_max_len():
    def never_end(contexts):
        logits = np.zeros((len(contexts), len(VOCAB)))
        logits[:, 0] = -1e9
        return logits

    names = sample_names(never_end, VOCAB, 3, 10, rng=np.random.default_rng(0), min_len=1, max_len=6)
    assert [len(n) for n in names] == [6] * 10


@settings(max_examples=50, deadline=None)
@given(
    count=st.integers(0, 30),
    min_len=st.integers(1, 6),
    extra=st.integers(0, 6),
    seed=st.integers(0, 2**32 - 1),
    temperature=st.floats(0, 3),
)
def test_names_respect_bounds_and_vocabulary(count, min_len, extra, seed, temperature):
    names = sample_names(uniform_logits, VOCAB, 2, count, rng=np.random.default_rng(seed),
                         temperature=temperature, min_len=min_len, max_len=min_len + extra)
    assert len(names) == count
    assert all(min_len <= len(n) <= min_len + extra and set(n) <= {"a", "b", "c"} for n in names)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"count": -1}, "count -1 is negative"),
        ({"temperature": -0.5}, "temperature -0.5"),
        ({"min_len": 5, "max_len": 4}, "max_len 4 is below min_len 5"),
        ({"min_len": 0}, "min_len 0"),
    ],
)
def test_impossible_requests_are_refused(kwargs, message):
    args = {"count": 3, "min_len": 1, "max_len": 5, **kwargs}
    count = args.pop("count")
    with pytest.raises(RequestError, match=message):
        sample_names(uniform_logits, VOCAB, 2, count, rng=np.random.default_rng(0), **args)
