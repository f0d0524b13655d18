"""The bundled files on an x86 CPU with AVX2 only (no AVX-512, VNNI or AMX), emulated by qemu.

onnxruntime and OpenBLAS choose their kernels from the CPU's features, so this runs
other code than the machine the files were exported on: the integer kernels that made
the old int8 file fail verify there (max |dp| 7.26e-4) among them. ``.ci/run`` installs
Debian's qemu-user-static; without it these tests are skipped, saying so (and fail under .ci/run).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from nametool.runtime import NameModel

QEMU = shutil.which("qemu-x86_64-static") or shutil.which("qemu-x86_64")
CPU = "Haswell"  # AVX2 and FMA; no AVX-512, no VNNI, no AMX
# emulated AVX2 runs the float default at ~5 names/s in small batches, the exact files at hundreds (default)
# to thousands (lecture) a second at batch 4,096
NAMES = {"default": 2000, "default-float": 20, "lecture": 20000}
CHECK = """
import hashlib, json, sys
import numpy as np
NAMES = json.loads(sys.argv[2])
from nametool.runtime.verify import verify
from nametool.runtime.model import NameModel
out = {}
for name in ("default", "default-float", "lecture"):
    model = NameModel.load(name, engine=sys.argv[1], threads=1)
    report = verify(model)
    contexts = np.random.default_rng(0).integers(0, len(model.meta.vocab), (300, model.meta.model.context_size))
    outputs = model.integer_logits(contexts) if model.form == "exact" else model.logits(contexts)
    digest = hashlib.sha256(outputs.tobytes()).hexdigest()
    out[name] = [report.ok, report.max_deviation, model.generate(NAMES[name], seed=7, batch_size=4096), digest]
print(json.dumps(out))
"""


def logits_digest(model: NameModel) -> str:
    """As CHECK computes it: SHA-256 of the logits (an exact file's integers) of 300 seeded random contexts."""
    contexts = np.random.default_rng(0).integers(0, len(model.meta.vocab), (300, model.meta.model.context_size))
    outputs = model.integer_logits(contexts) if model.form == "exact" else model.logits(contexts)
    return hashlib.sha256(outputs.tobytes()).hexdigest()

pytestmark = [
    pytest.mark.skipif(QEMU is None, reason="qemu-user-static is not installed (apt-get install qemu-user-static)"),
    pytest.mark.skipif(os.uname().machine != "x86_64", reason="emulates an x86_64 CPU with this Python"),
]


def emulated(engine: str, cpu: str = CPU) -> dict:
    result = subprocess.run([QEMU, "-cpu", cpu, sys.executable, "-c", CHECK, engine, json.dumps(NAMES)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


CPU_FEATURES = """
import json
try:
    from numpy._core._multiarray_umath import __cpu_features__
except ImportError:  # numpy 1.x
    from numpy.core._multiarray_umath import __cpu_features__
print(json.dumps(__cpu_features__))
"""


def test_the_emulated_cpu_really_lacks_avx512():
    """What CPUID tells numpy under emulation: the kernels it and onnxruntime may pick."""
    out = subprocess.run([QEMU, "-cpu", CPU, sys.executable, "-c", CPU_FEATURES],
                         capture_output=True, text=True, timeout=120)
    features = json.loads(out.stdout)
    assert features["AVX2"] and features["FMA3"]
    assert not any(on for name, on in features.items() if name.startswith("AVX512"))


@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
def test_bundled_files_verify_and_give_the_same_names_on_avx2_only(engine):
    found = emulated(engine)
    for name, (ok, deviation, names, digest) in found.items():
        assert ok, f"{name}: verify failed on AVX2 only (max |dp| {deviation:.2e})"
        assert names == NameModel.load(name, engine="onnxruntime").generate(NAMES[name], seed=7, batch_size=4096), name
        exact = NameModel.load(name, engine="numpy").form == "exact"
        if engine == "numpy" or exact:  # float64 accumulation or integers: the same bits as on this CPU
            assert digest == logits_digest(NameModel.load(name, engine=engine, threads=1)), name
