"""nametool's random stream (runtime/uniforms.py) against its definition in docs/random.md."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nametool.runtime import NameModel
from nametool.runtime.generation import make_rng
from nametool.runtime.uniforms import UniformStream, stream_key

M64 = (1 << 64) - 1


def mix_int(z: int) -> int:
    """SplitMix64's finaliser in plain Python integers: an independent reading of the definition."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def draw_int(seed: int, k: int) -> float:
    key = mix_int(seed)
    return (mix_int((key + (k + 1) * 0x9E3779B97F4A7C15) & M64) >> 11) / 2.0 ** 53


@pytest.mark.parametrize("seed", [0, 1, 7, 12345, 2**32 - 1, 2**63, 2**64 - 1])
def test_the_stream_is_its_definition(seed):
    got = UniformStream(seed).random(50)
    assert got.tolist() == [draw_int(seed, k) for k in range(50)]


def test_mix_is_splitmix64():
    """SplitMix64 from state 0 outputs mix(GAMMA), mix(2 GAMMA), ...: its published first two outputs."""
    assert mix_int(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF
    assert mix_int((2 * 0x9E3779B97F4A7C15) & M64) == 0x6E789E6AA1B965F4


def test_the_documented_test_vectors():
    """docs/random.md's table, which a port (the web page's JavaScript among them) checks itself against."""
    with open(_doc_path()) as f:
        text = f.read()
    rows = [line.split("|")[1:4] for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) >= 6
    for seed, k, value in rows:
        seed, k = int(seed.strip().replace(",", "")), int(k.strip())
        expected = float(value.strip().strip("`"))
        assert float(UniformStream(seed).random(k + 1)[k]) == expected
        assert draw_int(seed, k) == expected


def _doc_path():
    from pathlib import Path
    return Path(__file__).resolve().parents[1] / "docs" / "random.md"


def test_draws_do_not_depend_on_how_they_are_taken():
    whole = UniformStream(3).random(1000)
    stream = UniformStream(3)
    parts = [stream.random((7, 9)).ravel(), stream.random(1), stream.random((2, 100)).ravel(),
             stream.random(1000 - 63 - 1 - 200)]
    assert np.array_equal(np.concatenate(parts), whole)
    assert stream.position == 1000


def test_the_key_is_a_bijection_on_neighbouring_seeds():
    keys = {stream_key(s) for s in range(10_000)}
    assert len(keys) == 10_000


def test_uniform_in_the_unit_interval_and_unbiased():
    u = UniformStream(11).random(200_000)
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.bincount((u * 100).astype(int), minlength=100)
    chi2 = ((counts - 2000.0) ** 2 / 2000.0).sum()
    assert chi2 < 160  # 99 degrees of freedom: p < 1e-4 above this
    # neighbouring draws and neighbouring seeds are not correlated
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01
    other = UniformStream(12).random(200_000)
    assert abs(np.corrcoef(u, other)[0, 1]) < 0.01
    assert abs(u.mean() - 0.5) < 4 * math.sqrt(1 / 12 / len(u))


def test_no_seed_takes_a_fresh_one_each_time():
    a, b = make_rng(None), make_rng(None)
    assert a.seed != b.seed
    assert not np.array_equal(a.random(10), b.random(10))


def test_generation_reads_the_stream_name_by_name():
    """Name i reads draws i*max_len .. i*max_len + max_len - 1: inject those uniforms by hand."""
    from nametool.runtime.generation import Request, plan, _sample_chunk

    model = NameModel.load("default", engine="numpy")
    names = model.generate(20, seed=5)
    p = plan(Request(count=20), model.meta)
    uniforms = np.array([[draw_int(5, i * p.max_len + j) for j in range(p.max_len)] for i in range(20)])
    assert _sample_chunk(model.sampling_logits, model.meta, p, uniforms) == names
