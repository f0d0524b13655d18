"""Robustness: options out of range, contradictory options, unknown prefix characters, odd sizes.

Usage errors exit 2 through click's types; values click lets through but nametool
cannot honour exit 1 with one ``Error:`` line naming the value. Never a traceback.
Cases marked xfail need a change in a CLI module (listed in docs/robustness.md).
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from nametool.runtime import NameModel, RequestError
from nametool.runtime.cli import main as run_main

from .conftest import TINY_NAMES


def refused(result, code: int) -> str:
    """An exit with ``code``, no uncaught exception, and the error as the last line."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # else CliRunner caught a crash
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "Traceback" not in result.output
    return last


GENERATE = [
    (["-n", "-1"], 2, "--count"),
    (["-n", "ten"], 2, "'ten' is not a valid integer"),
    (["--temperature", "-0.5"], 2, "--temperature"),
    (["--temperature", "nan"], 1, "temperature nan must be a finite number >= 0"),
    (["--temperature", "inf"], 1, "temperature inf must be a finite number >= 0"),
    (["--top-k", "0"], 2, "--top-k"),
    (["--top-k", "-3"], 2, "--top-k"),
    (["--top-p", "0"], 2, "--top-p"),
    (["--top-p", "-0.1"], 2, "--top-p"),
    (["--top-p", "1.5"], 2, "--top-p"),
    (["--top-p", "nan"], 1, "top-p nan must be in (0, 1]"),
    (["--min-len", "0"], 2, "--min-len"),
    (["--max-len", "0"], 2, "--max-len"),
    (["--max-len", "257"], 1, "max-len 257 is above the limit 256"),
    (["--max-len", "1000000000"], 1, "max-len 1000000000 is above the limit 256"),
    (["--batch-size", "0"], 2, "--batch-size"),
    (["--threads", "0"], 2, "--threads"),
    (["--threads", "-2"], 2, "--threads"),
    (["--seed", "-1"], 2, "--seed"),
    (["--seed", str(2**64)], 2, "--seed"),
]


@pytest.mark.parametrize("args, code, message", GENERATE)
def test_generate_numeric_options_out_of_range(args, code, message):
    line = refused(CliRunner().invoke(run_main, ["generate", "--model", "lecture", *args]), code)
    assert message in line


@pytest.mark.parametrize("args, code, message", [
    (["--top", "0"], 2, "--top"),
    (["--temperature", "-1"], 2, "--temperature"),
    (["--temperature", "nan"], 1, "temperature nan must be a finite number"),
    (["--temperature", "inf"], 1, "temperature inf must be a finite number"),
])
def test_predict_numeric_options_out_of_range(args, code, message):
    assert message in refused(CliRunner().invoke(run_main, ["predict", "ab", "--model", "lecture", *args]), code)


def test_the_api_refuses_the_same_values():
    model = NameModel.load("lecture")
    for options, message in [({"count": -1}, "count -1 is negative"), ({"seed": -1}, "seed -1 is outside"),
                             ({"max_len": 300}, "max-len 300 is above the limit"),
                             ({"temperature": float("nan")}, "temperature nan"), ({"top_k": 0}, "top-k 0"),
                             ({"top_p": 2.0}, "top-p 2.0"), ({"batch_size": 0}, "batch size 0")]:
        with pytest.raises(RequestError, match=message):
            model.generate(**options)
    with pytest.raises(RequestError, match="temperature -1"):
        model.next_char_distribution("a", temperature=-1)


# -- training options: refused before any file is written ---------------------------------------

TRAIN_BASE = ["--data", str(TINY_NAMES), "--context-size", "3", "--embed-dim", "4", "--hidden", "8",
              "--steps", "5", "--eval-every", "5"]
TRAIN = [
    (["--steps", "0"], 2, "--steps"),
    (["--batch-size", "0"], 2, "--batch-size"),
    (["--lr", "0"], 2, "--lr"),
    (["--lr", "-0.1"], 2, "--lr"),
    (["--warmup", "-1"], 2, "--warmup"),
    (["--weight-decay", "-1"], 2, "--weight-decay"),
    (["--dropout", "1"], 2, "--dropout"),
    (["--dropout", "-0.1"], 2, "--dropout"),
    (["--eval-every", "0"], 2, "--eval-every"),
    (["--patience", "0"], 2, "--patience"),
    (["--context-size", "0"], 2, "--context-size"),
    (["--context-size", "257"], 1, "context_size 257 is above the limit 256"),
    (["--embed-dim", "0"], 2, "--embed-dim"),
    (["--embed-dim", "100000000"], 1, "above the limit 100,000,000"),
    (["--hidden", "0"], 2, "need one or more positive layer sizes"),
    (["--hidden", "8,-2"], 2, "need one or more positive layer sizes"),
    (["--hidden", "1000000000"], 1, "above the limit 100,000,000"),
    (["--hidden", ",".join(["4"] * 17)], 1, "17 layers, above the limit 16"),
    (["--members", "0"], 2, "--members"),
    (["--members", "17"], 2, "--members"),
    (["--hidden", "500000", "--members", "16"], 1, "above the limit 100,000,000"),  # 7M each
    (["--precision", "fp16"], 2, "--precision"),
    (["--min-len", "0"], 2, "--min-len"),
    (["--max-len", "-1"], 2, "--max-len"),
    (["--seed", "-1"], 2, "--seed"),
    (["--seed", str(2**64)], 2, "--seed"),
    (["--lr", "1e30"], 1, "not saved: the weights hold NaN or inf (training diverged; try a lower --lr"),
    (["--weight-decay", "1e30"], 1, "not saved: the weights hold NaN or inf"),
    (["--lr", "nan"], 2, "--lr"),
    (["--lr", "inf"], 2, "--lr"),
    (["--weight-decay", "inf"], 2, "--weight-decay"),
    (["--dropout", "nan"], 2, "--dropout"),
    (["--weight-decay", "nan"], 2, "--weight-decay"),
]


@pytest.mark.parametrize("args, code, message", TRAIN)
def test_train_numeric_options_out_of_range(tmp_path, args, code, message):
    pytest.importorskip("torch")
    from nametool.train.cli import main as tool_main

    result = CliRunner().invoke(tool_main, ["train", *TRAIN_BASE, "--out", str(tmp_path / "m.pt"), *args])
    assert message in refused(result, code)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


@pytest.mark.parametrize("command, code, message", [
    (["export", "m.onnx", "--opset", "17"], 2, "--opset"),
    (["eval", "MODEL", "--samples", "-1"], 2, "--samples"),
    (["eval", "MODEL", "--samples", "3", "--seed", "-1"], 2, "--seed"),
])
def test_export_and_eval_options_out_of_range(tiny_run, command, code, message):
    from nametool.train.cli import main as tool_main

    _, onnx_path = tiny_run
    args = [str(onnx_path) if a == "MODEL" else a for a in command]
    assert message in refused(CliRunner().invoke(tool_main, args), code)


# -- contradictions -------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--min-len", "8", "--max-len", "3"], "max-len 3 is below min-len 8"),
    (["--min-len", "12"], "max-len 9 (the model's default) is below min-len 12"),
    (["--max-len", "2"], "max-len 2 is below min-len 5 (the model's default)"),
    (["--prefix", "abcdef", "--max-len", "5"], "prefix 'abcdef' is longer than max-len 5"),
    (["-n", "5", "--temperature", "0", "--unique"], "found only 1 unique names of the 5"),
    (["-n", "5", "--top-k", "1", "--unique", "--novel"], "unique and novel names of the 5"),
])
def test_contradictory_generate_options(args, message):
    assert message in refused(CliRunner().invoke(run_main, ["generate", "--model", "lecture", *args]), 1)


def test_novel_needs_a_model_that_carries_its_names(tiny_run, tmp_path):
    from .test_robustness_models import rewrite

    _, onnx_path = tiny_run
    bare = rewrite(onnx_path, tmp_path / "bare.onnx", payload=lambda d: d.update(known_names=None))
    result = CliRunner().invoke(run_main, ["generate", "--model", str(bare), "--novel"])
    assert "carries no training names, so --novel cannot check them" in refused(result, 1)


@pytest.mark.parametrize("args, code, message", [
    (["--min-len", "7", "--max-len", "5"], 2, "7 is above --max-len 5"),
    (["--min-len", "20"], 1, "no usable names (400 names shorter than 20)"),
    (["--max-len", "2"], 1, "no usable names (400 names longer than 2)"),
    (["--end-token", "\t"], 1, "end token '\\t' must be one printable character"),
])
def test_contradictory_train_options(tmp_path, args, code, message):
    pytest.importorskip("torch")
    from nametool.train.cli import main as tool_main

    result = CliRunner().invoke(tool_main, ["train", *TRAIN_BASE, "--out", str(tmp_path / "m.pt"), *args])
    assert message in refused(result, code)
    assert not (tmp_path / "m.pt").exists()


# -- prefixes with characters the model does not know ----------------------------------------------

@pytest.mark.parametrize("prefix, shown", [
    ("Zo", "'Z'"),  # prefixes are not lowercased: say so rather than guess
    ("zoë", "'ë'"),
    ("a b", "' '"),
    ("a.b", "'.'"),  # the end token cannot start a name
    ("ra😀", "'😀'"),
    ("a\tb", "'\\t'"),
    ("१२", "'१', '२'"),
])
def test_unknown_prefix_characters_are_named(prefix, shown):
    line = refused(CliRunner().invoke(run_main, ["generate", "--model", "lecture", "--prefix", prefix]), 1)
    assert f"{shown} not in the vocabulary (a-z, end '.')" in line
    with pytest.raises(RequestError):
        NameModel.load("lecture").generate(1, prefix=prefix)


# -- sizes: a context longer than any name, zero and negative counts --------------------------------

def test_a_context_longer_than_the_longest_name_trains_exports_and_generates(tmp_path):
    pytest.importorskip("torch")
    from nametool.train.cli import main as tool_main

    longest = max(len(line.strip()) for line in TINY_NAMES.read_text().splitlines())
    size = str(longest + 5)
    runner = CliRunner()
    trained = runner.invoke(tool_main, ["train", *TRAIN_BASE, "--context-size", size, "--steps", "40",
                                        "--out", str(tmp_path / "m.pt")])
    assert trained.exit_code == 0, trained.output
    exported = runner.invoke(tool_main, ["export", str(tmp_path / "m.onnx"), "--checkpoint", str(tmp_path / "m.pt")])
    assert exported.exit_code == 0, exported.output
    model = NameModel.load(tmp_path / "m.onnx")
    assert model.context_size == longest + 5
    names = model.generate(20, seed=0)
    assert len(names) == 20 and all(model.meta.sampling.min_len <= len(n) <= model.meta.sampling.max_len
                                    for n in names)
    assert runner.invoke(run_main, ["verify", str(tmp_path / "m.onnx")]).exit_code == 0


def test_zero_names_is_an_empty_answer_and_negative_is_refused():
    runner = CliRunner()
    empty = runner.invoke(run_main, ["generate", "--model", "lecture", "-n", "0"])
    assert empty.exit_code == 0 and empty.output == ""
    as_csv = runner.invoke(run_main, ["generate", "--model", "lecture", "-n", "0", "--format", "csv"])
    assert as_csv.exit_code == 0 and as_csv.output == "name,logprob\n"
    assert runner.invoke(run_main, ["generate", "--model", "lecture", "-n", "0", "--format", "json"]).output == "[]\n"
    model = NameModel.load("lecture")
    assert model.generate(0) == [] and model.generate(0, unique=True, novel=True) == [] and model.score([]) == []
    assert "--count" in refused(runner.invoke(run_main, ["generate", "-n", "-5"]), 2)
    assert "give names" in refused(runner.invoke(run_main, ["score", "--model", "lecture"], input="\n \n"), 2)
