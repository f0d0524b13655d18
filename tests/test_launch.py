"""``nametool-run``'s entry point: the quick path for plain ``generate`` parses what click parses,
prints what click's command prints, and hands every other command line to click."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from nametool.runtime.cli import main as run_main
from nametool.runtime.command import MANY_NAMES
from nametool.runtime.launch import GENERATE_DEFAULTS, quick_options

QUICK = [
    ["generate"],
    ["generate", "-n", "5"],
    ["generate", "--count", "0", "--seed", "18446744073709551615"],
    ["generate", "--seed", "007", "--model", "lecture", "-n", "12"],
    ["generate", "--model", "models/default.onnx"],
]
TO_CLICK = [
    [], ["--help"], ["--version"], ["info"], ["generate", "--help"], ["generate", "-h"],
    ["generate", "-n"],  # a flag without its value
    ["generate", "-n5"], ["generate", "--count=5"],  # attached values: click's to split
    ["generate", "-n", "-1"], ["generate", "--model", "-n"], ["generate", "--model", ""],
    ["generate", "-n", "5", "-n", "6"], ["generate", "-n", "5", "--count", "6"],  # repeated
    ["generate", "-n", "five"], ["generate", "-n", "+5"], ["generate", "-n", "٣"], ["generate", "-n", "1" * 5000],
    ["generate", "--seed", "18446744073709551616"],  # 2**64: click refuses it
    ["generate", "--temperature", "0.5"], ["generate", "--unique", "-n"], ["predict", "-n", "5"],
]


@pytest.mark.parametrize("words", QUICK, ids=" ".join)
def test_quick_options_are_what_click_parses(words):
    parsed = run_main.commands["generate"].make_context("generate", list(words[1:])).params
    assert quick_options(words) == parsed


def test_the_defaults_cover_every_option_of_generate():
    names = {p.name for p in run_main.commands["generate"].params}
    assert set(GENERATE_DEFAULTS) == names


@pytest.mark.parametrize("words", TO_CLICK, ids=" ".join)
def test_anything_else_goes_to_click(words):
    assert quick_options(words) is None


def launch(*words: str) -> subprocess.CompletedProcess:
    """The console script's own call, in a fresh process; stderr's last line lists whether click loaded."""
    code = ("import sys\nfrom nametool.runtime.launch import main\nsys.argv = ['nametool-run', *sys.argv[1:]]\n"
            "try:\n    main()\nfinally:\n    print('click' in sys.modules, file=sys.stderr)")
    return subprocess.run([sys.executable, "-c", code, *words], capture_output=True, text=True, timeout=120)


def test_the_quick_path_prints_what_click_prints_without_loading_click():
    words = ["generate", "-n", "25", "--seed", "4", "--model", "lecture"]
    quick = launch(*words)
    assert quick.returncode == 0, quick.stderr
    assert quick.stderr.splitlines()[-1] == "False"
    through_click = CliRunner().invoke(run_main, words)
    assert through_click.exit_code == 0, through_click.output
    assert quick.stdout == through_click.output and len(quick.stdout.split()) == 25


def test_a_user_error_on_the_quick_path_reads_as_click_has_it():
    quick = launch("generate", "--model", "no-such-model")
    assert quick.returncode == 1 and quick.stdout == ""
    through_click = CliRunner().invoke(run_main, ["generate", "--model", "no-such-model"])
    assert through_click.exit_code == 1
    assert quick.stderr.splitlines()[:-1] == through_click.output.splitlines()
    assert quick.stderr.startswith("Error: no-such-model: no such model file")


def test_other_command_lines_run_through_click():
    refused = launch("generate", "-n", "-1")
    assert refused.returncode == 2 and "is not in the range x>=0" in refused.stderr
    assert refused.stderr.splitlines()[-1] == "True"
    flagged = launch("generate", "-n", "3", "--seed", "1", "--temperature", "0")  # greedy: one name, thrice
    assert flagged.returncode == 0, flagged.stderr
    assert len(set(flagged.stdout.split())) == 1 and len(flagged.stdout.split()) == 3


def test_an_error_with_control_characters_reads_as_click_has_it():
    """Click's own printing, escape codes removed off a terminal: the quick path prints its errors with it."""
    quick = launch("generate", "--model", "\x1b[31mred")
    through_click = launch("generate", "--model", "\x1b[31mred", "--engine", "auto")  # not a quick command line
    assert quick.returncode == through_click.returncode == 1
    assert quick.stderr.splitlines()[:-1] == through_click.stderr.splitlines()[:-1]
    assert "\x1b" not in quick.stderr and "red: no such model file" in quick.stderr


@pytest.mark.parametrize("count, engine, kept", [(MANY_NAMES, "numpy", True), (MANY_NAMES - 1, "numpy", False),
                                                 (MANY_NAMES, "onnxruntime", False)])
def test_generate_keeps_freed_memory_for_thousands_of_names_on_numpy(monkeypatch, count, engine, kept):
    """glibc's thresholds (runtime/memory.py) are set where measured to pay, and small requests skip it."""
    from nametool.runtime import command, memory

    calls = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: calls.append(True) or True)
    options = {key: value for key, value in GENERATE_DEFAULTS.items()
               if key not in ("model_path", "threads", "engine")}
    command.generate_names({**options, "count": count, "seed": 0}, model_path="lecture", threads=None,
                           engine=engine)
    assert calls == ([True] if kept else [])
