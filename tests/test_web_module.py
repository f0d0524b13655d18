"""web/nametool.js against the Python runtime, in Node: the random stream and the sampler.

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


def run_node(payload: dict) -> dict:
    out = subprocess.run([NODE, str(DRIVER)], input=json.dumps(payload), capture_output=True, text=True, timeout=120)
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
