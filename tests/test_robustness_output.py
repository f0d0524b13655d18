"""Robustness: output into a closed pipe, and UTF-8 whatever the locale.

These run the real console script in a subprocess: a closed pipe and the locale
only behave for real outside CliRunner.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nametool.runtime import NameModel

NAMETOOL_RUN = shutil.which("nametool-run", path=str(Path(sys.executable).parent)) or shutil.which("nametool-run")
pytestmark = pytest.mark.skipif(NAMETOOL_RUN is None, reason="the nametool-run console script is not installed")

DEVANAGARI = ["अनिल", "सुनीता", "राधा", "कविता", "मोहन", "सीता", "गीता", "रमेश", "सुरेश", "अनीता", "राहुल",
              "प्रिया", "दीपक", "पूजा", "अमित", "नेहा", "विजय", "रेखा", "संजय", "ममता"]


def run_shell(script: str, env: dict | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script, NAMETOOL_RUN], capture_output=True, timeout=120,
                          env=env or os.environ, input=stdin)


@pytest.mark.parametrize("command, reader", [
    ("generate -n 100000 --model lecture", "head -1"),
    ("generate -n 100000 --model lecture", "true"),  # closed before the first write
    ("generate -n 8000 --model lecture --format csv", "head -1"),
    ("generate -n 8000 --model lecture --format json", "head -1"),
    ("score --model lecture < NAMES", "head -1"),
])
def test_a_closed_pipe_ends_quietly(tmp_path, command, reader):
    names = tmp_path / "names.txt"
    names.write_text("aabid\nravi\n" * 4000)
    script = f'"$0" {command.replace("NAMES", str(names))} | {reader}; exit "${{PIPESTATUS[0]}}"'
    proc = run_shell(script)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""  # no BrokenPipeError traceback, no "Exception ignored" at exit
    if reader == "head -1":
        assert proc.stdout.count(b"\n") == 1


@pytest.fixture(scope="module")
def devanagari_model(tmp_path_factory):
    """A small model whose every character is outside ASCII."""
    pytest.importorskip("torch")
    from nametool.export.onnx_export import export_onnx
    from nametool.runtime.schema import ModelConfig
    from nametool.train.config import TrainConfig
    from nametool.train.data import load_names
    from nametool.train.training import run_training

    folder = tmp_path_factory.mktemp("devanagari")
    data = folder / "names.txt"
    data.write_text("\n".join(DEVANAGARI) + "\n", encoding="utf-8")
    result = run_training(load_names(data), ModelConfig(context_size=3, embed_dim=4, hidden=(16,)),
                          TrainConfig(steps=60, batch_size=32, eval_every=60, warmup=5, seed=1), folder / "m.pt")
    export_onnx(result.checkpoint, folder / "m.onnx")
    return folder / "m.onnx"


LOCALES = {
    "C, no coercion": {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"},
    "POSIX": {"LC_ALL": "POSIX", "LANG": "POSIX"},
    "PYTHONIOENCODING=latin-1": {"PYTHONIOENCODING": "latin-1"},
    "PYTHONIOENCODING=ascii": {"PYTHONIOENCODING": "ascii", "LC_ALL": "C", "PYTHONUTF8": "0"},
}


def locale_env(overrides: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_") and k not in ("LANG", "PYTHONIOENCODING",
                                                                                          "PYTHONUTF8")}
    return {**env, **overrides}


SEVERAL_COMMANDS = """
import sys
from nametool.runtime.cli import main
model = sys.argv[1]
for args in (["generate", "--model", model, "-n", "20", "--seed", "0"], ["generate", "--model", model, "-n", "3",
             "--format", "csv"], ["generate", "--model", model, "-n", "3", "--format", "json"],
             ["predict", "--model", model, "--top", "5"], ["info", model]):
    try:
        main(args)
    except SystemExit as exc:  # one interpreter, so one locale set-up, for every command
        assert exc.code == 0, (args, exc.code)
"""


@pytest.mark.parametrize("locale", LOCALES.values(), ids=LOCALES.keys())
def test_output_is_utf8_whatever_the_locale(devanagari_model, locale):
    proc = subprocess.run([sys.executable, "-c", SEVERAL_COMMANDS, str(devanagari_model)], capture_output=True,
                          timeout=120, env=locale_env(locale))
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode("utf-8", "replace")
    text = proc.stdout.decode("utf-8")  # strict: raises on anything but UTF-8
    names = text.splitlines()[:20]
    assert names == NameModel.load(devanagari_model).generate(20, seed=0)
    assert all("\u0900" <= c <= "\u097f" for name in names for c in name)
    assert "next after ''" in text and "vocabulary" in text and '"logprob"' in text and "name,logprob" in text


@pytest.mark.parametrize("locale", LOCALES.values(), ids=LOCALES.keys())
def test_errors_with_non_ascii_values_stay_one_line_in_any_locale(devanagari_model, locale):
    proc = run_shell(f'"$0" generate --model {devanagari_model} --prefix "zoë"', locale_env(locale))
    assert proc.returncode == 1 and proc.stdout == b""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(b"Error: prefix 'zo") and b"Traceback" not in proc.stderr


def test_score_refuses_stdin_that_is_not_utf8_in_one_line():
    proc = run_shell('"$0" score --model lecture', stdin=b"ravi\nab\xffcd\n")
    assert proc.returncode == 1 and proc.stderr == b"Error: stdin: not UTF-8 text (bad byte at offset 7)\n"


def test_score_reads_stdin_as_utf8_whatever_the_locale(devanagari_model):
    typed = "\n".join(DEVANAGARI[:3]).encode("utf-8")
    proc = run_shell(f'"$0" score --model {devanagari_model}', locale_env(LOCALES["PYTHONIOENCODING=latin-1"]),
                     stdin=typed)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")


def test_non_ascii_arguments_are_read_as_utf8_even_with_utf8_mode_off(devanagari_model):
    env = locale_env(LOCALES["C, no coercion"])  # Python then decodes argv as ASCII, with surrogate escapes
    proc = run_shell(f'"$0" score --model {devanagari_model} {DEVANAGARI[0]}', env)
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
