"""glibc malloc settings for a busy process: keep freed buffers for the next step.

A training step, and a numpy-engine call on thousands of rows, allocates and frees the same
tensors of 0.1 to 10 MB every time. glibc serves blocks above its mmap threshold with fresh
``mmap`` pages (the threshold starts at 128 KiB and slides up only as such blocks are freed)
and hands free memory at the top of the heap back to the system past its trim threshold, so
each step can pay again for zeroed pages it has just released. Measured on the 2-core Xeon
(AMX, AVX-512):

- training: bare steps of the default model (as bench/train_fold.py times them) 7.9 against
  6.2 ms in bf16, 8.2 against 7.4 ms folded fp32; whole ``nametool train`` runs, whose data
  preparation had already slid the threshold up, 19.5 against 20.4 s in bf16 and no change
  in fp32; the run's peak RSS 714 against 797 MB;
- ``nametool-run generate -n 40000 --engine numpy``, the default model, whole process, medians
  of 7 interleaved: 1.34 against 1.60 s at the default batch, 1.10 against 1.22 s at
  ``--batch-size 4096``. onnxruntime, which keeps its own arena, showed no change.

With both thresholds set the time no longer depends on that history. Off glibc (macOS,
Windows, musl, Pyodide) nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its sliding threshold on 64-bit systems
TRIM_THRESHOLD = 256 << 20  # well above a training step's or a 4,096-row call's working set
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Set glibc's thresholds for this process; False (nothing changed) off glibc, where refused, or
    where the environment already sets malloc's tunables. For the rest of the process: the
    ``nametool train`` and ``nametool-run generate`` commands call it, the library functions do not.

    The mmap threshold goes first: a fixed trim threshold alone also freezes the mmap threshold
    at 128 KiB, which sends every step's buffers to ``mmap`` (twice the step time, measured).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False  # musl and others have no mallopt, or another meaning for it
    if any(name in os.environ for name in USER_SETTINGS):
        return False  # the user's own malloc settings win
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
