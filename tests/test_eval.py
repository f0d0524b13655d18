"""nametool eval: the same numbers from a checkpoint and its model file; baselines; sample quality."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from nametool.runtime import NameModel
from nametool.train.commands import evaluate as eval_command
from nametool.train.evaluate import Source, evaluate, splits_from_meta


def test_checkpoint_and_model_file_give_the_same_numbers(tiny_float):
    pytest.importorskip("torch")
    result, onnx_path = tiny_float
    runner = CliRunner()
    from_ckpt = json.loads(runner.invoke(eval_command, [str(result.path), "--json", "--samples", "200"]).output)
    from_onnx = json.loads(runner.invoke(eval_command, [str(onnx_path), "--json", "--samples", "200"]).output)
    for split in ("train", "val", "test"):
        assert from_ckpt["model"][split]["nats"] == pytest.approx(from_onnx["model"][split]["nats"], abs=1e-5)
        assert from_ckpt["model"][split]["nats"] == pytest.approx(result.losses[split], abs=1e-5)
    assert from_ckpt["baselines"] == from_onnx["baselines"]
    assert from_ckpt["samples"] == from_onnx["samples"]


def test_a_model_file_rebuilds_its_split(tiny_float):
    result, onnx_path = tiny_float
    assert splits_from_meta(NameModel.load(onnx_path).meta) == result.checkpoint.splits


def test_the_default_model_beats_every_count_baseline_on_test():
    model = NameModel.load()
    report = evaluate(Source(model.logits, model.meta, splits_from_meta(model.meta), model.sampling_logits),
                      samples=300)
    test = {name: report["baselines"][name]["test"]["nats"] for name in ("unigram", "bigram", "trigram")}
    assert report["model"]["test"]["nats"] < test["trigram"] < test["bigram"] < test["unigram"]
    units = report["model"]["test"]
    assert units["bits"] == pytest.approx(units["nats"] / math.log(2))
    assert units["perplexity"] == pytest.approx(math.exp(units["nats"]))
    samples = report["samples"]
    assert samples["inside_length_bounds"] == 1.0 and 0.9 < samples["unique"] <= 1.0
    assert 0 <= samples["length_tv_distance"] < 0.2 and 0 < samples["in_training_set"] < 0.5


def test_human_output_is_a_compact_table():
    result = CliRunner().invoke(eval_command, ["--samples", "100"] + [str(NameModel.load().path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:4] == ["split", "nats", "bits", "ppl"]
    assert [line.split()[0] for line in lines[1:4]] == ["train", "val", "test"]
    assert lines[5].startswith("samples (100, seed 0): in training set")


def test_eval_takes_a_bundled_model_by_name():
    runner = CliRunner()
    by_name = json.loads(runner.invoke(eval_command, ["lecture", "--json", "--samples", "0"]).output)
    by_path = json.loads(runner.invoke(eval_command, [str(NameModel.load("lecture").path), "--json",
                                                      "--samples", "0"]).output)
    assert by_name == by_path and by_name["model"]["test"]["nats"] > 2
