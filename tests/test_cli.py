"""The command lines end to end: train -> export -> generate, and their errors."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nametool.runtime.cli import main as run_main
from nametool.train.cli import main as tool_main

from .conftest import TINY_NAMES

TINY_TRAIN = ["--data", str(TINY_NAMES), "--context-size", "3", "--embed-dim", "6", "--hidden", "24",
              "--steps", "200", "--batch-size", "64", "--lr", "0.01"]


def test_train_export_generate_in_a_fresh_folder(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    trained = runner.invoke(tool_main, ["train", *TINY_TRAIN])
    assert trained.exit_code == 0, trained.output
    assert "400 names from" in trained.output
    for split in ("train", "val", "test"):
        assert f"  {split}" in trained.output and "bigram" in trained.output
    checkpoints = list((tmp_path / "runs").glob("*/model.pt"))
    assert len(checkpoints) == 1

    exported = runner.invoke(tool_main, ["export", "model.onnx"])
    assert exported.exit_code == 0, exported.output
    assert "max |dp|" in exported.output and (tmp_path / "model.onnx").is_file()

    again = runner.invoke(tool_main, ["export", "model.onnx"])
    assert again.exit_code == 1 and "exists; pass --force" in again.output

    generated = runner.invoke(run_main, ["generate", "--model", "model.onnx", "-n", "25", "--seed", "3"])
    assert generated.exit_code == 0, generated.output
    names = generated.output.split()
    assert len(names) == 25 and all(names)
    same = runner.invoke(run_main, ["generate", "--model", "model.onnx", "-n", "25", "--seed", "3"])
    assert same.output == generated.output


def test_train_with_length_filter_reports_what_it_dropped(tmp_path):
    pytest.importorskip("torch")
    runner = CliRunner()
    out = tmp_path / "m.pt"
    result = runner.invoke(tool_main, ["train", *TINY_TRAIN, "--steps", "20", "--min-len", "6", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "names shorter than 6" in result.output and out.is_file()
    refused = runner.invoke(tool_main, ["train", *TINY_TRAIN, "--steps", "20", "--out", str(out)])
    assert refused.exit_code == 1 and "exists; pass --force" in refused.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data", "/no/such/file.txt"], "no such names file"),
        (["--hidden", "a,b"], "give layer sizes as integers"),
        (["--min-len", "7", "--max-len", "5"], "above --max-len 5"),
        (["--out", "/no/such/folder/m.pt"], "no such folder"),
        (["--end-token", "ab"], "exactly one character"),
    ],
)
def test_train_errors_are_one_line(args, message):
    pytest.importorskip("torch")
    result = CliRunner().invoke(tool_main, ["train", "--data", str(TINY_NAMES), *args])
    assert result.exit_code in (1, 2)
    assert message in result.output
    assert "Traceback" not in result.output


def test_export_without_runs_says_what_to_do(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(tool_main, ["export", "model.onnx"])
    assert result.exit_code == 1 and "no checkpoint under runs/" in result.output


def test_generate_errors_are_one_line(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(run_main, ["generate", "--model", str(tmp_path / "x.onnx")])
    assert missing.exit_code == 1 and "no such model file" in missing.output
    bad = runner.invoke(run_main, ["generate", "--temperature", "-1"])
    assert bad.exit_code == 2 and "--temperature" in bad.output
    bounds = runner.invoke(run_main, ["generate", "--min-len", "8", "--max-len", "3"])
    assert bounds.exit_code == 1 and "max_len 3 is below min_len 8" in bounds.output
