"""Training's faster paths to the same numbers: the bfloat16 tanh, stacked members, glibc malloc's thresholds."""

from __future__ import annotations

import ctypes
import platform
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from torch.nn import functional as F  # noqa: E402

from nametool.runtime.schema import ModelConfig  # noqa: E402

from nametool.runtime import memory  # noqa: E402
from nametool.train.model import Tanh, _Bf16Tanh, build_model  # noqa: E402


def every_bfloat16() -> torch.Tensor:
    """All 65,536 bfloat16 bit patterns: both zeros, subnormals, infinities and NaNs included."""
    return torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a.view(torch.int16) == b.view(torch.int16)) | (a.isnan() & b.isnan())).all())


@pytest.mark.parametrize("threads", [1, 2])
def test_the_bfloat16_tanh_gives_pytorchs_bits_forward_and_backward(threads):
    x = every_bfloat16().repeat(5).view(2560, 128)  # two blocks of _Bf16Tanh.BLOCK elements, one partial
    assert 1 < x.numel() / _Bf16Tanh.BLOCK < 2
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).bfloat16()
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        found = {}
        for name, tanh in (("ours", Tanh()), ("torch", torch.tanh)):
            leaf = x.clone().requires_grad_()
            out = tanh(leaf)
            out.backward(grad)
            found[name] = (out.detach(), leaf.grad)
    finally:
        torch.set_num_threads(saved)
    assert found["ours"][0].dtype == torch.bfloat16
    assert same_bits(found["ours"][0], found["torch"][0])
    assert same_bits(found["ours"][1], found["torch"][1])


def test_tanh_of_float32_is_torchs_and_exports_as_tanh():
    x = torch.linspace(-5, 5, 101)
    assert torch.equal(Tanh()(x), torch.tanh(x))
    for odd in (torch.tensor(0.5).bfloat16(), torch.zeros(3, 0).bfloat16(), torch.zeros(0, 4).bfloat16()):
        assert same_bits(Tanh()(odd), torch.tanh(odd)) and Tanh()(odd).shape == odd.shape
    assert isinstance(Tanh(), torch.nn.Tanh)  # what the exporter sees and writes as ONNX Tanh


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
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
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "True", "0", "1"]  # glibc's default mmaps 8 MB; ours keeps it, not 64


def test_a_refused_mmap_threshold_leaves_the_trim_threshold_alone(monkeypatch):
    """A fixed trim threshold alone would freeze the mmap threshold at 128 KiB: twice the step time."""
    calls = []

    class Libc:
        @staticmethod
        def mallopt(param, value):
            calls.append(param)
            return 0  # refused, as a 32-bit glibc refuses a threshold of 32 MB

    monkeypatch.setattr(platform, "system", lambda: "Linux")
    monkeypatch.setattr(platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc)
    assert memory.keep_freed_memory() is False
    assert calls == [memory.M_MMAP_THRESHOLD]


def test_keep_freed_memory_changes_nothing_off_glibc(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(ctypes, "CDLL", lambda name: pytest.fail("mallopt called off glibc"))
    assert memory.keep_freed_memory() is False


@pytest.mark.parametrize("config", [ModelConfig(10, 32, (48,), members=3),
                                    ModelConfig(4, 6, (24, 16), norm="layer", members=2)])
def test_stacked_members_give_each_members_logits_and_gradients(config):
    """bf16 training runs an ensemble's members as one batched call per layer; the maths is each member's."""
    torch.manual_seed(1)
    model = build_model(27, config)
    model.train()
    contexts, targets = torch.randint(0, 27, (64, config.context_size)), torch.randint(0, 27, (64,))
    found = {}
    for way, logits in (("stacked", lambda c: model._stacked_logits(c).unbind(0)),
                        ("one by one", lambda c: [m(c) for m in model.members])):
        model.zero_grad()
        outputs = logits(contexts)  # float32 here, to compare the maths closely
        sum(F.cross_entropy(out, targets) for out in outputs).backward()
        found[way] = ([out.detach() for out in outputs], [p.grad.clone() for p in model.parameters()])
    assert len(found["stacked"][0]) == config.members
    for a, b in zip(*(found[way][0] + found[way][1] for way in found)):
        assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()


def test_training_stacks_members_in_bf16_only():
    torch.manual_seed(1)
    model = build_model(27, ModelConfig(10, 32, (48,), members=3))
    contexts = torch.randint(0, 27, (64, 10))
    calls = []
    stacked = model._stacked_logits
    model._stacked_logits = lambda c: calls.append(len(c)) or stacked(c)
    model.train()
    one_by_one = [m(contexts) for m in model.members]
    assert all(torch.equal(a, b) for a, b in zip(model.member_logits(contexts), one_by_one)) and not calls
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model.member_logits(contexts)
        expected = [m(contexts) for m in model.members]
    assert calls == [64]
    assert all(a.dtype == torch.bfloat16 and torch.allclose(a.float(), b.float(), atol=0.05)
               for a, b in zip(outputs, expected))
    model.fold = True  # folded (float32 on CPUs without AMX): member by member
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.member_logits(contexts)
    model.fold = False
    model.eval()  # evaluation and export: member by member
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.member_logits(contexts)
    assert calls == [64]
