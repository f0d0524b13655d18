"""The runtime never needs torch or onnx; the base install is only what a device needs."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

import pytest

from .conftest import BLOCKER


def run_blocked(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BLOCKER), code, *args], capture_output=True, text=True,
                          timeout=120)


def test_blocker_really_blocks_torch():
    result = run_blocked("import torch")
    assert result.returncode == 1 and "ModuleNotFoundError: No module named 'torch' (blocked)" in result.stderr


def test_runtime_generates_with_torch_and_onnx_blocked():
    result = run_blocked(
        "from nametool.runtime.cli import main\n"
        "main(['generate', '-n', '5', '--seed', '1'])"
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 5


def test_the_console_scripts_quick_path_generates_with_torch_and_onnx_blocked():
    result = run_blocked(
        "import sys\n"
        "sys.argv = ['nametool-run', 'generate', '-n', '5', '--seed', '1']\n"
        "from nametool.runtime.launch import main\n"
        "main()"
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
    base = {r.split(">")[0].split("=")[0].split("<")[0].split(";")[0].strip()
            for r in requires("nametool") if "extra ==" not in r}
    assert base == {"numpy", "onnxruntime", "click"}


@pytest.mark.parametrize("machine, platform, wanted", [
    ("x86_64", "linux", True), ("aarch64", "linux", True), ("arm64", "darwin", True), ("AMD64", "win32", True),
    ("armv7l", "linux", False), ("armv6l", "linux", False), ("i686", "linux", False), ("x86", "win32", False),
    ("wasm32", "emscripten", False),
])
def test_onnxruntime_is_required_only_where_it_has_wheels(machine, platform, wanted):
    from packaging.requirements import Requirement

    (ort,) = [Requirement(r) for r in requires("nametool") if r.startswith("onnxruntime")]
    assert ort.marker.evaluate({"platform_machine": machine, "sys_platform": platform}) is wanted


def venv_without_onnxruntime(root: Path) -> Path:
    """A real virtual environment holding numpy, click and nametool's runtime, and no onnxruntime."""
    import click
    import numpy

    import nametool.models
    import nametool.runtime

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    for package in (Path(numpy.__file__).parent, Path(click.__file__).parent):
        (site / package.name).symlink_to(package)
        libs = package.with_name(package.name + ".libs")  # a manylinux wheel's bundled libraries
        if libs.exists():
            (site / libs.name).symlink_to(libs)
    (site / "nametool").mkdir()
    for package in (nametool.runtime, nametool.models):
        (site / "nametool" / package.__name__.split(".")[-1]).symlink_to(Path(package.__file__).parent)
    return python


RUN = "import sys; from nametool.runtime.cli import main; main(sys.argv[1:])"


def test_a_venv_without_onnxruntime_runs_every_runtime_command(tmp_path):
    python = venv_without_onnxruntime(tmp_path / "venv")

    def run(*args, stdin=None):
        return subprocess.run([str(python), "-c", RUN, *args], capture_output=True, text=True, input=stdin,
                              timeout=120)

    probe = subprocess.run([str(python), "-c", "import onnxruntime"], capture_output=True, text=True)
    assert probe.returncode == 1 and "No module named 'onnxruntime'" in probe.stderr  # the test has teeth
    generated = run("generate", "-n", "200", "--seed", "4")
    assert generated.returncode == 0, generated.stderr
    from nametool.runtime import NameModel

    assert generated.stdout.split() == NameModel.load(engine="onnxruntime").generate(200, seed=4)
    for args in (["predict", "abi"], ["score", "aabid", "rahul"], ["verify"], ["verify", "default-float"],
                 ["info"], ["generate", "--model", "lecture", "-n", "3"],
                 ["embeddings", "--nearest", "a"], ["embeddings", "--analogy", "a:e::o:?"]):
        result = run(*args)
        assert result.returncode == 0, (args, result.stderr)
    assert "engine       numpy" in run("info").stdout
    assert "on numpy, integer masses all equal" in run("verify").stdout  # the exact default
    refused = run("generate", "--engine", "onnxruntime")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "Error: --engine onnxruntime: onnxruntime is not installed here (pip install onnxruntime, "
        "where a wheel exists; or --engine numpy)"]
