"""Same seed, same options: PyTorch's reference path and the runtime give the same names."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from nametool.runtime import NameModel  # noqa: E402
from nametool.runtime.generation import Request  # noqa: E402
from nametool.train.reference import sample_with_torch  # noqa: E402


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"temperature": 0.6},
        {"temperature": 1.7},
        {"temperature": 0},
        {"top_k": 3},
        {"top_p": 0.7},
        {"temperature": 1.3, "top_k": 8, "top_p": 0.9},
        {"min_p": 0.2},
        {"temperature": 1.4, "top_p": 0.95, "min_p": 0.1},
        {"prefix": "ra"},
        {"prefix": "s", "min_len": 6, "max_len": 7},
        {"min_len": 3, "max_len": 4, "temperature": 0.8},
        {"unique": True, "novel": True},
        {"exclude": ("a", "ee"), "min_p": 0.05},
        {"suffix": "a", "contains": "r"},
    ],
)
def test_torch_and_runtime_give_identical_names(tiny_run, options):
    result, onnx_path = tiny_run
    request = Request(count=300, **options)
    ours = NameModel.load(onnx_path).generate(300, seed=123, **options)
    theirs = sample_with_torch(result.checkpoint, request, seed=123)
    assert ours == theirs and len(ours) == 300
    if options.get("temperature") == 0:
        assert len(set(ours)) == 1  # greedy: one name, 300 times
    else:
        assert len(set(ours)) > 1


def test_different_seeds_differ(tiny_run):
    result, _ = tiny_run
    assert sample_with_torch(result.checkpoint, Request(count=50), 1) != sample_with_torch(
        result.checkpoint, Request(count=50), 2)
