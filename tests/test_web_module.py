"""web/nametool.js against the Python runtime, in Node: the random stream, both samplers and
the exact form's engine.

The page's names equal the CLI's only if both draw the same uniforms and turn them into the
same ids. These run the module's own functions on cases the Python side made and compare
exactly; the whole page runs in a real browser in tests/test_web.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nametool.runtime.sampling import draw, next_char_probs
from nametool.runtime.uniforms import UniformStream

NODE = shutil.which("node")
DRIVER = Path(__file__).parent / "js" / "sampler_cases.mjs"
EXACT_DRIVER = Path(__file__).parent / "js" / "exact_cases.mjs"
VECTORS = Path(__file__).parent / "js" / "exact_vectors.test.mjs"
pytestmark = pytest.mark.skipif(NODE is None, reason="Node.js is not installed (the web module's tests need it)")

OPTIONS = [  # (python keyword arguments, the JavaScript options)
    ({}, {}),
    ({"temperature": 0.7}, {"temperature": 0.7}),
    ({"temperature": 1.3, "top_k": 5}, {"temperature": 1.3, "topK": 5}),
    ({"top_p": 0.9}, {"topP": 0.9}),
    ({"min_p": 0.05}, {"minP": 0.05}),
    ({"temperature": 0}, {"temperature": 0}),
    ({"forbid": 0}, {"forbid": 0}),
    ({"temperature": 0.5, "top_p": 0.8, "forbid": 0, "top_k": 20}, {"temperature": 0.5, "topP": 0.8, "forbid": 0, "topK": 20}),
]


def run_node(payload: dict, driver: Path = DRIVER) -> dict:
    out = subprocess.run([NODE, str(driver)], input=json.dumps(payload), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def boundary_uniforms(logits: np.ndarray, rng) -> np.ndarray:
    """Uniforms within 3e-8 (relative) of a boundary of each row's CDF: where a last-bit
    difference in exp or in the cumulative sum would change the id drawn."""
    p = np.exp((logits - logits.max(axis=1, keepdims=True)).astype(np.float64))
    cdf = np.cumsum(p, axis=1)
    j = rng.integers(0, logits.shape[1] - 1, len(logits))
    return np.clip(cdf[np.arange(len(logits)), j] / cdf[:, -1] * (1 + rng.uniform(-3e-8, 3e-8, len(logits))), 0, 1 - 1e-16)


def test_the_stream_matches_python_and_the_documented_vectors():
    seeds = [0, 1, 42, 12345, 2**63 + 5, 2**64 - 1]
    got = run_node({"cases": [], "seeds": [[str(s), 200] for s in seeds]})["streams"]
    for seed, values in zip(seeds, got):
        assert values == UniformStream(seed).random(200).tolist(), seed


@pytest.mark.parametrize("stressed", [False, True], ids=["random-uniforms", "uniforms-at-cdf-boundaries"])
def test_the_sampler_draws_the_ids_python_draws(stressed):
    rng = np.random.default_rng(7)
    cases, expected = [], []
    for py, js in OPTIONS:
        logits = (rng.standard_normal((1500, 27)) * 3).astype(np.float32)
        logits[rng.random(logits.shape) < 0.02] = -np.inf  # masked ids, as exclusions and int8 files give
        logits[:, 1] = np.maximum(logits[:, 1], 0)  # one finite id in every row
        u = boundary_uniforms(np.where(np.isinf(logits), -80, logits), rng) if stressed else rng.random(len(logits))
        expected += draw(logits, u, **py).tolist()
        cases += [{"logits": [None if np.isinf(v) else float(v) for v in row], "u": float(x), "options": js}
                  for row, x in zip(logits, u)]
    for case in cases:  # JSON has no -inf: null marks it
        case["logits"] = [v if v is not None else "-inf" for v in case["logits"]]
    ids = run_node({"cases": cases, "seeds": []})["ids"]
    mismatches = [(i, a, b) for i, (a, b) in enumerate(zip(ids, expected)) if a != b]
    assert not mismatches, f"{len(mismatches)} of {len(ids)} ids differ, first {mismatches[:5]}"


def test_the_distributions_match_python():
    rng = np.random.default_rng(8)
    logits = (rng.standard_normal((300, 27)) * 3).astype(np.float32)
    payload = {"cases": [], "seeds": [], "probs": []}
    expected = []
    for py, js in OPTIONS:
        payload["probs"] += [{"logits": row.tolist(), "options": js} for row in logits]
        expected.append(next_char_probs(logits if "forbid" not in py else np.where(np.arange(27) == py["forbid"], -np.inf, logits),
                                        py.get("temperature", 1.0), top_k=py.get("top_k"), top_p=py.get("top_p"),
                                        min_p=py.get("min_p")))
    got = np.array(run_node(payload)["probs"])
    assert np.abs(got - np.concatenate(expected)).max() <= 1e-15


# ---- the exact form (docs/exact.md) ----------------------------------------------------------


def test_the_exact_sampler_gives_the_documented_vectors():
    out = subprocess.run([NODE, "--test", str(VECTORS)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "# pass 6" in out.stdout and "# fail 0" in out.stdout


EXACT_OPTIONS = [  # (python keyword arguments, the JavaScript options)
    ({}, {}),
    ({"temperature": 0.7}, {"temperature": 0.7}),
    ({"temperature": 1.7, "top_k": 4}, {"temperature": 1.7, "topK": 4}),
    ({"top_p": 0.8}, {"topP": 0.8}),
    ({"min_p": 0.05}, {"minP": 0.05}),
    ({"temperature": 0.3, "top_k": 20, "top_p": 0.9, "min_p": 0.01},
     {"temperature": 0.3, "topK": 20, "topP": 0.9, "minP": 0.01}),
    ({"temperature": 0}, {"temperature": 0}),
    ({"temperature": 2**-20}, {"temperature": 2**-20}),
    ({"temperature": 1e6}, {"temperature": 1e6}),
]


def exact_cases(rng, members: int, vocab: int, rows: int):
    """Graph outputs of every magnitude the bounds allow, multipliers up to 2^28, masks."""
    from nametool.runtime.exact import make_exp_table

    scale = 2.0 ** rng.integers(4, 24, (rows, 1, 1))
    z = np.clip(np.rint(rng.standard_normal((rows, members, vocab)) * scale), -(2**24) + 1, 2**24 - 1).astype(np.int64)
    z[rng.random(z.shape) < 0.05] = 0
    multipliers = rng.integers(1, 2**28, (members, vocab)) >> rng.integers(0, 20, (members, 1))
    multipliers = np.maximum(multipliers, 1)
    allowed = rng.random((rows, vocab)) > 0.1
    allowed[np.arange(rows), rng.integers(0, vocab, rows)] = True  # at least one id each
    return z, multipliers, make_exp_table(), allowed


@pytest.mark.parametrize("members, vocab", [(1, 27), (3, 27), (2, 5), (4, 60)])
def test_the_exact_sampler_gives_pythons_masses_and_ids(members, vocab):
    from nametool.runtime.exact import draw_ids, exact_probs, uniform_bits

    rng = np.random.default_rng(members * 100 + vocab)
    for py, js in EXACT_OPTIONS:
        z, multipliers, table, allowed = exact_cases(rng, members, vocab, 300)
        masked = rng.random(len(z)) < 0.5  # half the rows carry a mask
        allowed[~masked] = True
        P = exact_probs(z, multipliers, table, allowed=allowed, **py)
        # half the uniforms put the threshold on a cumulative mass or one below it, where an
        # off-by-one in the draw would show; the bits of u below its top 24 must not matter
        cdf = np.cumsum(P, axis=1)
        target = np.maximum(cdf[np.arange(len(z)), rng.integers(0, vocab, len(z))] - rng.integers(0, 2, len(z)), 0)
        u24 = np.minimum(-(-(target << 24) // cdf[:, -1]), 2**24 - 1)
        u24 = np.where(rng.random(len(z)) < 0.5, u24, rng.integers(0, 2**24, len(z)))
        u = u24 * 2.0**-24 + rng.integers(0, 2**29, len(z)) * 2.0**-53
        assert (uniform_bits(u) == u24).all()
        cases = [{"z": row.ravel().tolist(), "options": js, "allowed": mask.astype(int).tolist() if m else None,
                  "u": float(x)} for row, mask, m, x in zip(z, allowed, masked, u)]
        got = run_node({"sampler": {"multipliers": multipliers.tolist(), "expTable": table.tolist(), "cases": cases}},
                       EXACT_DRIVER)
        assert np.array_equal(np.array(got["probs"], dtype=np.int64), P), py
        assert got["ids"] == draw_ids(P, u24).tolist(), py


@pytest.fixture(scope="module")
def exact_file(tiny_run):
    """conftest's tiny model in the exact form (export's default): one member, two hidden layers."""
    from nametool.runtime import NameModel

    _, path = tiny_run
    assert NameModel.load(path).form == "exact"
    return path


def test_the_js_engine_computes_the_files_integers(exact_file):
    """Every context of the model, on the page's engine and on onnxruntime: the same integers."""
    from nametool.runtime import NameModel

    model = NameModel.load(exact_file, engine="onnxruntime")
    vocab, size = len(model.vocab), model.context_size
    contexts = np.stack(np.unravel_index(np.arange(vocab**size), (vocab,) * size), axis=1)
    got = run_node({"file": str(exact_file), "contexts": contexts.tolist()}, EXACT_DRIVER)
    assert "error" not in got, got.get("error")
    assert np.array_equal(np.array(got["integers"]).reshape(len(contexts), -1, vocab), model.integer_logits(contexts))
    assert got["info"]["verified"] == {"ok": True, "maxDeviation": 0, "rows": len(model.meta.golden.contexts), "exact": True}


NAME_REQUESTS = [  # (the JavaScript options, Python keyword options)
    ({"count": 20000, "seed": 3}, {"seed": 3}),
    ({"count": 3000, "seed": 1, "temperature": 0.8, "topK": 10, "topP": 0.9},
     {"seed": 1, "temperature": 0.8, "top_k": 10, "top_p": 0.9}),
    ({"count": 2000, "seed": 3, "prefix": "ra", "minLen": 6, "maxLen": 8},
     {"seed": 3, "prefix": "ra", "min_len": 6, "max_len": 8}),
    ({"count": 300, "seed": 4, "unique": True, "novel": True, "minP": 0.02},
     {"seed": 4, "unique": True, "novel": True, "min_p": 0.02}),
    ({"count": 2000, "seed": "18446744073709551615", "temperature": 1.5, "batchSize": 7},
     {"seed": 2**64 - 1, "temperature": 1.5, "batch_size": 7}),
    ({"count": 50, "seed": 9, "temperature": 0}, {"seed": 9, "temperature": 0}),
]


def test_the_js_engine_gives_the_clis_names(exact_file):
    from nametool.runtime import NameModel

    model = NameModel.load(exact_file)
    got = run_node({"file": str(exact_file), "requests": [js for js, _ in NAME_REQUESTS]}, EXACT_DRIVER)
    assert "error" not in got, got.get("error")
    for (js, py), names in zip(NAME_REQUESTS, got["names"]):
        assert names.split("\n") == model.generate(js["count"], **py), js


def _changed(data: bytes, name: str, change) -> bytes:
    """The file with initializer ``name``'s raw bytes replaced by ``change(array)``'s, metadata kept."""
    from nametool.runtime.onnxfile import read_onnx

    array = read_onnx(data).initializers[name]
    at = data.find(array.tobytes())
    assert at > 0 and data.find(array.tobytes(), at + 1) < 0
    changed = change(array.copy()).astype(array.dtype).tobytes()
    return data[:at] + changed + data[at + len(changed):]


def _negate_first(a):
    a.flat[0] = -a.flat[0]
    return a


@pytest.mark.parametrize("name, change, expected", [
    ("exact.out_bias", _negate_first, "the file's golden rows differ: "),
    ("exact.out_weight", lambda a: np.full_like(a, 127), "exact form: the stated bounds "),
    ("exact.tables", lambda a: np.full_like(a, 32767), "exact form: the stated bounds "),
    ("exact.scale1", lambda a: a * np.float32(3), "exact.scale1: every entry must be a power of two from 2^-23 to 1"),
])
def test_an_altered_exact_file_is_refused_in_one_line(exact_file, tmp_path, name, change, expected):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(_changed(exact_file.read_bytes(), name, change))
    got = run_node({"file": str(bad), "requests": [{"count": 1}]}, EXACT_DRIVER)
    assert got.get("error", "").startswith(expected) and "\n" not in got["error"], got
