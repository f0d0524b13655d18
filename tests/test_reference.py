"""Same seed, same options: PyTorch's reference path and the runtime give the same names."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from nametool.runtime import NameModel  # noqa: E402
from nametool.runtime.generation import Request, generate, make_rng  # noqa: E402
from nametool.runtime.onnxfile import read_onnx  # noqa: E402
from nametool.train.exact import exact_member_logits  # noqa: E402
from nametool.train.reference import sample_with_torch  # noqa: E402


OPTIONS = [
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
]


@pytest.mark.parametrize("options", OPTIONS)
def test_torch_and_runtime_give_identical_names(tiny_float, options):
    """The float form: torch's float logits through the runtime's sampler."""
    result, onnx_path = tiny_float
    request = Request(count=300, **options)
    ours = NameModel.load(onnx_path).generate(300, seed=123, **options)
    theirs = sample_with_torch(result.checkpoint, request, seed=123)
    assert ours == theirs and len(ours) == 300
    if options.get("temperature") == 0:
        assert len(set(ours)) == 1  # greedy: one name, 300 times
    else:
        assert len(set(ours)) > 1


@pytest.mark.parametrize("options", OPTIONS)
@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
def test_torch_int64_and_runtime_give_identical_names_from_an_exact_file(tiny_run, options, engine):
    """The exact form: PyTorch's int64 computation of the file's integers (train/exact.py, no graph)
    through the sampler gives the names of either engine, 2,000 of them."""
    _, onnx_path = tiny_run
    model = NameModel.load(onnx_path, engine=engine)
    arrays, meta = read_onnx(onnx_path.read_bytes()).initializers, model.meta
    assert meta.form == "exact"

    def torch_integers(contexts):
        return exact_member_logits(arrays, contexts, vocab_size=len(meta.vocab), members=meta.model.members,
                                   layers=len(meta.model.hidden))

    request = Request(count=2000, **options)
    ours = model.generate(2000, seed=123, **options)
    theirs = generate(torch_integers, meta, request, make_rng(123))
    assert ours == theirs and len(ours) == 2000
    if options.get("temperature") == 0:
        assert len(set(ours)) == 1  # greedy: one name, 300 times
    else:
        assert len(set(ours)) > 1


def test_different_seeds_differ(tiny_float):
    result, _ = tiny_float
    assert sample_with_torch(result.checkpoint, Request(count=50), 1) != sample_with_torch(
        result.checkpoint, Request(count=50), 2)
