"""The line every recorded figure carries: which CPU it was measured on."""

from __future__ import annotations

import os
import subprocess


def cpu_line() -> str:
    """``Intel(R) Xeon(R) Processor (AMX, AVX-512, VNNI, AVX2), 2 cores``, from lscpu."""
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("Flags")), [])
    kinds = [k for k, f in (("AMX", "amx_int8"), ("AVX-512", "avx512f"), ("VNNI", "avx512_vnni"),
                            ("AVX2", "avx2")) if f in flags]
    return f"{model} ({', '.join(kinds) or 'none of AMX, AVX-512, VNNI, AVX2'}), {len(os.sched_getaffinity(0))} cores"
