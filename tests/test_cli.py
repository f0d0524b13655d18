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
    assert "exact form" in exported.output and "the same integers" in exported.output
    assert (tmp_path / "model.onnx").is_file()

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
    "args, code, message",
    [
        (["--data", "/no/such/file.txt"], 1, "no such names file"),
        (["--hidden", "a,b"], 2, "give layer sizes as integers"),
        (["--min-len", "7", "--max-len", "5"], 2, "above --max-len 5"),
        (["--out", "/no/such/folder/m.pt"], 1, "no such folder"),
        (["--end-token", "ab"], 2, "exactly one character"),
    ],
)
def test_train_errors_are_one_line(args, code, message):
    pytest.importorskip("torch")
    result = CliRunner().invoke(tool_main, ["train", "--data", str(TINY_NAMES), *args])
    assert result.exit_code == code, result.output
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


def test_nametool_sample_equals_nametool_run_generate(tiny_float):
    result, onnx_path = tiny_float
    args = ["-n", "40", "--seed", "9", "--temperature", "0.9", "--top-k", "10", "--prefix", "a", "--format", "csv"]
    runner = CliRunner()
    theirs = runner.invoke(tool_main, ["sample", "--checkpoint", str(result.path), *args])
    ours = runner.invoke(run_main, ["generate", "--model", str(onnx_path), *args])
    assert ours.exit_code == theirs.exit_code == 0, ours.output + theirs.output
    our_rows = [line.split(",") for line in ours.output.splitlines()]
    their_rows = [line.split(",") for line in theirs.output.splitlines()]
    assert our_rows[0] == ["name", "logprob"] and len(our_rows) == 41
    assert [r[0] for r in our_rows] == [r[0] for r in their_rows]
    assert all(abs(float(a[1]) - float(b[1])) < 1e-4 for a, b in zip(our_rows[1:], their_rows[1:]))


def test_generate_json_gives_names_with_log_probabilities():
    import json

    result = CliRunner().invoke(run_main, ["generate", "-n", "5", "--seed", "1", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [set(r) for r in rows] == [{"name", "logprob"}] * 5
    assert all(r["logprob"] < 0 for r in rows)
    text = CliRunner().invoke(run_main, ["generate", "-n", "5", "--seed", "1"]).output.split()
    assert [r["name"] for r in rows] == text


def test_predict_prints_a_sorted_table():
    result = CliRunner().invoke(run_main, ["predict", "abi", "--top", "4"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "next after 'abi':" and len(lines) == 5
    probs = [float(line.split()[1].rstrip("%")) for line in lines[1:]]
    assert probs == sorted(probs, reverse=True) and probs[0] > 10


def test_score_reads_arguments_and_stdin():
    runner = CliRunner()
    args = runner.invoke(run_main, ["score", "aabid", "xqzzy"])
    assert args.exit_code == 0, args.output
    first, second = args.output.splitlines()
    assert first.startswith("aabid\tlog-likelihood") and "perplexity" in first and "d:" in first
    assert float(first.split("\t")[1].split()[1]) > float(second.split("\t")[1].split()[1])
    piped = runner.invoke(run_main, ["score"], input="aabid\n\nxqzzy\n")
    assert piped.output == args.output
    bad = runner.invoke(run_main, ["score", "ab3"])
    assert bad.exit_code == 1 and "'3' not in the vocabulary" in bad.output


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--top-p", "1.5"], 2, "--top-p"),
        (["--top-k", "0"], 2, "--top-k"),
        (["--temperature", "-1"], 2, "--temperature"),
        (["-n", "-3"], 2, "--count"),
        (["--prefix", "zoë"], 1, "prefix 'zoë': 'ë' not in the vocabulary"),
        (["--prefix", "abcdefghij"], 1, "longer than max-len 9"),
        (["--min-len", "8", "--max-len", "3"], 1, "max-len 3 is below min-len 8"),
        (["-n", "5", "--temperature", "0", "--unique"], 1, "found only 1 unique names of the 5"),
    ],
)
def test_generate_refuses_impossible_requests_in_one_line(args, code, message):
    result = CliRunner().invoke(run_main, ["generate", *args])
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def test_another_alphabet_end_to_end(tmp_path):
    pytest.importorskip("torch")
    names = ["अनिल", "सुनीता", "राधा", "कविता", "मोहन", "सीता", "गीता", "रमेश", "सुरेश", "अनीता", "राहुल",
             "प्रिया", "दीपक", "पूजा", "अमित", "नेहा", "विजय", "रेखा", "संजय", "ममता"]
    data = tmp_path / "hindi.txt"
    data.write_text("\n".join(names) + "\n", encoding="utf-8")
    runner = CliRunner()
    trained = runner.invoke(tool_main, ["train", "--data", str(data), "--context-size", "3", "--embed-dim", "4",
                                        "--hidden", "16", "--steps", "100", "--out", str(tmp_path / "m.pt")])
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(tool_main, ["export", str(tmp_path / "m.onnx"), "--checkpoint", str(tmp_path / "m.pt")])
    assert exported.exit_code == 0, exported.output
    generated = runner.invoke(run_main, ["generate", "--model", str(tmp_path / "m.onnx"), "-n", "20", "--seed", "0"])
    assert generated.exit_code == 0, generated.output
    alphabet = set("".join(names))
    out = generated.output.split()
    assert len(out) == 20 and all(set(name) <= alphabet for name in out)
    verified = runner.invoke(run_main, ["verify", str(tmp_path / "m.onnx")])
    assert verified.exit_code == 0, verified.output


def test_train_refuses_an_unwritable_out_before_training(tmp_path):
    pytest.importorskip("torch")
    result = CliRunner().invoke(tool_main, ["train", *TINY_TRAIN, "--out", "/proc/m.pt"])
    assert result.exit_code == 1 and "/proc/m.pt: cannot write (" in result.output
    assert "training" not in result.output  # refused before any work


def test_shortened_settings_are_reported(tmp_path):
    pytest.importorskip("torch")
    result = CliRunner().invoke(tool_main, ["train", *TINY_TRAIN, "--steps", "30", "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 0, result.output
    assert "note: --warmup 200 shortened to 3 (at most a tenth of --steps)" in result.output
    assert "note: --eval-every 500 shortened to 30 (at most --steps)" in result.output


def test_every_nametool_command_reads_its_model_argument_one_way(tiny_run, tmp_path, monkeypatch):
    """A bundled model's name, a .onnx path, a checkpoint and a run folder mean the same on every command."""
    pytest.importorskip("matplotlib")
    result, onnx_path = tiny_run
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for source in ("lecture", str(onnx_path), str(result.path), str(result.path.parent)):
        evaluated = runner.invoke(tool_main, ["eval", source, "--samples", "0", "--json"])
        assert evaluated.exit_code == 0, (source, evaluated.output)
        plotted = runner.invoke(tool_main, ["plot", "next", source, "--out", str(tmp_path / "n.png"), "--force"])
        assert plotted.exit_code == 0, (source, plotted.output)
    bundled = runner.invoke(tool_main, ["plot", "next", "lecture", "--context", "ab"])
    assert bundled.exit_code == 0 and (tmp_path / "next-ab.png").exists()  # here, not inside the package
    refused = runner.invoke(tool_main, ["export", "x.onnx", "--checkpoint", "lecture"])
    assert refused.exit_code == 1
    assert "lecture: is a model file; this command needs a training checkpoint" in refused.output
    missing = runner.invoke(tool_main, ["eval", "nonesuch"])
    assert missing.exit_code == 1 and "nonesuch" in missing.output and "Traceback" not in missing.output


def test_without_steps_a_run_takes_25_passes_over_its_windows_at_most_3000(tmp_path):
    pytest.importorskip("torch")
    from nametool.train.checkpoint import load_checkpoint
    from nametool.train.config import auto_steps
    from nametool.train.data import load_names, split_names

    windows = sum(len(n) + 1 for n in split_names(load_names(TINY_NAMES).names, 42)[0])
    result = CliRunner().invoke(tool_main, ["train", "--data", str(TINY_NAMES), "--context-size", "3", "--embed-dim",
                                            "4", "--hidden", "8", "--members", "1", "--batch-size", "512",
                                            "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 0, result.output
    expected = -(-25 * windows // 512)
    assert f"steps: {expected:,} (25 passes over {windows:,} training windows at batch 512" in result.output
    assert load_checkpoint(tmp_path / "m.pt").train_config.steps == expected == auto_steps(windows, 512)
    assert auto_steps(163_690, 1024) == 3000 and auto_steps(10**7, 1024) == 3000 and auto_steps(1, 1024) == 1
