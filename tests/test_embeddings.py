"""The embedding table read back from the model file, its nearest characters and analogies."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from nametool.runtime import NameModel, RequestError
from nametool.runtime.cli import main as run_main


def one_line_error(result) -> str:
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    return result.output


def test_the_table_is_the_trained_one(tiny_run):
    result, onnx_path = tiny_run
    trained = result.checkpoint.model.state_dict()
    stored = NameModel.load(onnx_path).embeddings()
    assert np.array_equal(stored, trained[next(k for k in trained if k.endswith("embed.weight"))].numpy())


@pytest.mark.parametrize("name", ["default", "default-float", "lecture"])
def test_every_bundled_model_shows_every_members_table(name):
    model = NameModel.load(name)
    for member in range(model.meta.model.members):
        table = model.embeddings(member)
        assert table.shape == (len(model.vocab), model.meta.model.embed_dim) and np.isfinite(table).all()
    with pytest.raises(RequestError, match=f"member {model.meta.model.members} is out of range"):
        model.embeddings(model.meta.model.members)
    if model.meta.model.members > 1:
        assert not np.array_equal(model.embeddings(0), model.embeddings(1))  # each member learned its own


def test_the_table_prints_one_row_per_character_in_every_format():
    runner, model = CliRunner(), NameModel.load("lecture")
    table = model.embeddings()
    text = runner.invoke(run_main, ["embeddings", "--model", "lecture"]).output.splitlines()
    assert [line.split()[0] for line in text] == list(model.vocab.itos())
    as_json = json.loads(runner.invoke(run_main, ["embeddings", "--model", "lecture", "--format", "json"]).output)
    assert np.allclose([as_json[c] for c in model.vocab.itos()], table, atol=1e-6)
    rows = runner.invoke(run_main, ["embeddings", "--model", "lecture", "--format", "csv"]).output.splitlines()
    assert rows[0].split(",")[:2] == ["char", "d0"] and len(rows) == len(model.vocab) + 1


def test_nearest_ranks_as_cosine_and_distance_do():
    model = NameModel.load("lecture")
    table, itos = model.embeddings().astype(np.float64), model.vocab.itos()
    a = table[itos.index("a")]
    cos = {c: float(v @ a / np.linalg.norm(v) / np.linalg.norm(a)) for c, v in zip(itos, table) if c != "a"}
    dist = {c: float(np.linalg.norm(v - a)) for c, v in zip(itos, table) if c != "a"}
    out = json.loads(CliRunner().invoke(run_main, ["embeddings", "--model", "lecture", "--nearest", "a",
                                                   "--top", "3", "--format", "json"]).output)
    assert [r["char"] for r in out["cosine"]] == sorted(cos, key=lambda c: -cos[c])[:3]
    assert [r["char"] for r in out["euclidean"]] == sorted(dist, key=dist.get)[:3]


def test_the_analogy_is_the_closest_to_b_minus_a_plus_c_leaving_out_the_three():
    model = NameModel.load("default")
    table, itos = model.embeddings(1).astype(np.float64), model.vocab.itos()
    target = table[itos.index("e")] - table[itos.index("a")] + table[itos.index("o")]
    cos = {c: float(v @ target / np.linalg.norm(v) / np.linalg.norm(target))
           for c, v in zip(itos, table) if c not in "aeo"}
    out = json.loads(CliRunner().invoke(run_main, ["embeddings", "--analogy", "a:e::o:?", "--member", "1",
                                                   "--format", "json"]).output)
    assert [r["char"] for r in out["answers"]] == sorted(cos, key=lambda c: -cos[c])[:5]


@pytest.mark.parametrize("args, message", [
    (["--nearest", "Z"], "'Z' is not in this model's vocabulary"),
    (["--analogy", "a:e:o"], "write it as a:b::c:?"),
    (["--analogy", "a:e::Q:?"], "'Q' is not in this model's vocabulary"),
    (["--member", "3"], "member 3 is out of range: this model has 3"),
])
def test_impossible_requests_are_one_line_errors(args, message):
    assert message in one_line_error(CliRunner().invoke(run_main, ["embeddings", *args]))
