"""glibc malloc's thresholds (runtime/memory.py): set for busy processes, never over the user's own."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys

import pytest

from nametool.runtime import memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc"
                    or not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="glibc 2.33 or later only")
def test_keep_freed_memory_serves_step_sized_buffers_from_the_heap():
    # In a child process: the settings last for the process. mallinfo2 counts blocks served by mmap.
    code = """
import ctypes
from nametool.runtime.memory import keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)

def mmapped(size):
    before = libc.mallinfo2().hblks
    block = libc.malloc(size)
    after = libc.mallinfo2().hblks
    libc.free(block)
    return after - before

first = mmapped(8 << 20)
print(first, keep_freed_memory(), mmapped(8 << 20), mmapped(64 << 20))
"""
    env = {name: value for name, value in os.environ.items() if name not in memory.USER_SETTINGS}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.split() == ["1", "True", "0", "1"]  # above MMAP_THRESHOLD still mmapped


def test_a_refused_mmap_threshold_leaves_the_trim_threshold_alone(monkeypatch):
    """A fixed trim threshold alone would freeze the mmap threshold at 128 KiB: twice the step time."""
    calls = []

    class Libc:
        @staticmethod
        def mallopt(param, value):
            calls.append(param)
            return 0  # refused, as a glibc whose threshold ceiling is lower would

    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc)
    assert memory.keep_freed_memory() is False
    assert calls == [memory.M_MMAP_THRESHOLD]


def test_keep_freed_memory_changes_nothing_off_glibc(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(ctypes, "CDLL", lambda name: pytest.fail("mallopt called off glibc"))
    assert memory.keep_freed_memory() is False


@pytest.mark.parametrize("name", ["MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"])
def test_the_users_own_malloc_settings_win(monkeypatch, name):
    monkeypatch.setenv(name, "glibc.malloc.trim_threshold=0" if name == "GLIBC_TUNABLES" else "0")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: pytest.fail("mallopt called over the user's settings"))
    assert memory.keep_freed_memory() is False
