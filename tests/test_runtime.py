"""The runtime API: loading, checks against the graph, sampling."""

from __future__ import annotations

import numpy as np
import pytest

from nametool.runtime import ModelFileError, NameModel, RequestError


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


@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
@pytest.mark.parametrize("name", ["default", "lecture"])  # folded and plain files
def test_logits_refuse_ids_outside_the_vocabulary_and_misshapen_contexts(engine, name):
    """A folded table would read id ``vocab`` from the next position's rows, and onnxruntime's Gather
    would take -1 as the last row: both are refused, on either engine and either form."""
    model = NameModel.load(name, engine=engine)
    good = np.zeros((3, model.context_size), dtype=np.int64)
    assert model.logits(good).shape == (3, len(model.vocab))
    for bad in (len(model.vocab), -1):
        contexts = good.copy()
        contexts[1, 0] = bad
        with pytest.raises(RequestError, match="context ids must lie in"):
            model.logits(contexts)
    with pytest.raises(RequestError, match="contexts must be"):
        model.logits(np.zeros((3, model.context_size + 1), dtype=np.int64))


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


@pytest.mark.parametrize("name, rel", [("default-float", 1e-5), ("default", 5e-3)])
def test_score_matches_next_char_distributions(name, rel):
    """An exact file scores with its logits as real numbers and draws from integer masses, which
    agree within the exp table's step (2^-8 nats) where the mass is not tiny."""
    model = NameModel.load(name)
    (scored,) = model.score(["Abi"])  # normalised like the training data
    assert scored.name == "abi" and len(scored.char_probs) == 4
    assert scored.char_probs[2] == pytest.approx(model.next_char_distribution("ab")["i"], rel=rel)
    assert scored.char_probs[0] == pytest.approx(model.next_char_distribution("")["a"], rel=rel)
    assert scored.log_likelihood == pytest.approx(np.log(scored.char_probs).sum())
    assert scored.perplexity == pytest.approx(np.exp(-scored.log_likelihood / 4))


def test_real_names_score_higher_than_noise():
    real, noise = NameModel.load().score(["aabid", "xqzzy"])
    assert real.log_likelihood > noise.log_likelihood + 10


def test_novel_names_are_not_in_the_training_data():
    model = NameModel.load()
    known = model.meta.known_names
    assert known is not None and known.count > 25_000 and "aabid" in known
    names = model.generate(300, seed=4, novel=True, unique=True)
    assert len(set(names)) == 300 and not any(name in known for name in names)
    plain = model.generate(300, seed=4)
    assert any(name in known for name in plain)  # the filter has something to do


def test_bundled_models_are_found_by_name():
    from nametool.runtime.model import bundled_models

    bundled = bundled_models()
    assert {"default", "default-float", "lecture"} <= set(bundled)
    lecture = NameModel.load("lecture")
    assert lecture.meta.model.context_size == 3 and lecture.meta.model.hidden == (200,)
    assert (lecture.form, NameModel.load("default").form, NameModel.load("default-float.onnx").form) == (
        "exact", "exact", "float")
    with pytest.raises(ModelFileError, match="nor a bundled model \\(bundled: default, default-float, lecture"):
        NameModel.load("nonesuch")


def test_models_command_lists_every_bundled_model():
    import json

    from click.testing import CliRunner

    from nametool.runtime.cli import main

    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["lecture"]["parameters"] < rows["default"]["parameters"]
    assert rows["lecture"]["file_bytes"] < rows["default"]["file_bytes"] < rows["default-float"]["file_bytes"]
    assert (rows["default"]["form"], rows["default-float"]["form"]) == ("exact", "float")
    assert all(row["names_per_second"] > 0 and row["test_loss"] > 1 for row in rows.values())
    text = CliRunner().invoke(main, ["models"]).output.splitlines()
    assert text[0].split()[:5] == ["name", "form", "size", "params", "test"] and len(text) == len(rows) + 1
    assert rows["default"]["config"] == "context 10, 32-d, hidden 384, 3 members averaged"
    assert rows["lecture"]["config"] == "context 3, 10-d, hidden 200"


@pytest.mark.parametrize("name", ["default", "default-float", "lecture"])
def test_sharing_equal_contexts_leaves_the_bundled_models_names_unchanged(name, monkeypatch):
    from nametool.runtime import generation

    model = NameModel.load(name, threads=1)
    shared = model.generate(2048, seed=7, batch_size=2048)
    monkeypatch.setattr(generation, "SHARE_UNTIL", 0)
    assert model.generate(2048, seed=7, batch_size=2048) == shared
