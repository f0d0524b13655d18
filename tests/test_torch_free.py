"""The runtime never needs torch or onnx; the base install is only what a device needs."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires

import pytest

from .conftest import BLOCKER


def run_blocked(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BLOCKER), code, *args], capture_output=True, text=True,
                          timeout=120)


def test_blocker_really_blocks_torch():
    result = run_blocked("import torch")
    assert result.returncode != 0 and "blocked" in result.stderr


def test_runtime_generates_with_torch_and_onnx_blocked():
    result = run_blocked(
        "from nametool.runtime.cli import main\n"
        "main(['generate', '-n', '5', '--seed', '1'])"
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 5


def test_python_api_works_with_torch_and_onnx_blocked():
    result = run_blocked(
        "import sys\n"
        "from nametool.runtime import NameModel\n"
        "m = NameModel.load()\n"
        "print(len(m.generate(3, seed=0)), round(sum(m.next_char_distribution('abi').values()), 6))\n"
        "assert not any(name.split('.')[0] in ('torch', 'onnx') for name in sys.modules)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["3", "1.0"]


def test_nametool_help_works_without_torch():
    result = run_blocked("from nametool.train.cli import main\nmain(['--help'])")
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "export" in result.stdout


@pytest.mark.parametrize("command", ["train", "export model.onnx"])
def test_training_without_torch_names_the_install_command(command):
    args = ", ".join(repr(a) for a in command.split())
    result = run_blocked(f"from nametool.train.cli import main\nmain([{args}])")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ["Error: torch is not installed; training and export need: pip install 'nametool[train]'"]


def test_base_dependencies_are_exactly_the_runtime_ones():
    base = {r.split(">")[0].split("=")[0].split("<")[0].strip()
            for r in requires("nametool") if "extra ==" not in r}
    assert base == {"numpy", "onnxruntime", "click"}
