"""The footprint claims stay true: a constrained device still generates; commands import lazily."""

from __future__ import annotations

import subprocess
import sys

CONSTRAINED = """
import os, resource
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one CPU
limit = 512 * 1024 * 1024
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # a 512 MB address space
from nametool.runtime.cli import main
main(["generate", "-n", "2000", "--seed", "1"])
"""


def test_generation_fits_one_cpu_and_512_mb():
    result = subprocess.run([sys.executable, "-c", CONSTRAINED], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 2000


def test_the_limit_really_binds():
    """The same limit set far lower makes the import fail: the check above has teeth."""
    code = CONSTRAINED.replace("512 * 1024 * 1024", "64 * 1024 * 1024")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == "", result.stderr  # an uncaught import error, no names


def imported_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)), file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(result.stderr.splitlines()[-1].split())


def test_runtime_cli_help_loads_neither_numpy_nor_onnxruntime():
    code = ("from nametool.runtime.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")
    modules = imported_after(code)
    assert "click" in modules and not {"numpy", "onnxruntime", "torch"} & modules


def test_nametool_cli_loads_no_torch_until_a_command_needs_it():
    code = ("from nametool.train.cli import main\n"
            "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass")
    modules = imported_after(code)
    assert not {"torch", "onnx", "numpy", "onnxruntime"} & modules
