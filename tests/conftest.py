"""Shared fixtures: one tiny model, trained and exported once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nametool.runtime.known import KnownNames
from nametool.runtime.schema import ModelConfig, ModelMeta, Provenance, SamplingDefaults, Vocab

TINY_NAMES = Path(__file__).parent / "data" / "tiny_names.txt"
BLOCKER = Path(__file__).parent / "block_imports.py"
# .ci/run sets it: there every test must run, so a skip (chromium, node, qemu or a package missing)
# fails the run instead of passing it quietly
REQUIRE_ALL = "NAMETOOL_REQUIRE_ALL"


@pytest.fixture(autouse=True)
def _allocator_untouched(request, monkeypatch):
    """``nametool train`` and large numpy ``generate`` set glibc's malloc thresholds for their whole
    process (runtime/memory.py); run in-process by a test they would change every later test's.
    tests/test_memory.py tests the setting itself (in child processes where it sticks)."""
    if request.module.__name__.rsplit(".", 1)[-1] != "test_memory":
        from nametool.runtime import memory

        monkeypatch.setattr(memory, "keep_freed_memory", lambda: False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get(REQUIRE_ALL) and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but {REQUIRE_ALL} is set (CI runs every test): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole module skipped while collected (``importorskip`` at its top) fails the same way."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get(REQUIRE_ALL):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but {REQUIRE_ALL} is set (CI runs every test): {reason}"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A small model on the tiny dataset: (checkpoint, path to checkpoint, path to .onnx, result)."""
    pytest.importorskip("torch")
    from nametool.export.onnx_export import export_onnx
    from nametool.runtime.schema import ModelConfig
    from nametool.train.data import load_names
    from nametool.train.config import TrainConfig
    from nametool.train.training import run_training

    folder = tmp_path_factory.mktemp("tiny_run")
    names = load_names(TINY_NAMES)
    result = run_training(
        names,
        ModelConfig(context_size=3, embed_dim=8, hidden=(32, 32)),
        TrainConfig(steps=300, batch_size=64, lr=1e-2, warmup=20, eval_every=100, seed=7),
        folder / "model.pt",
    )
    onnx_path = folder / "model.onnx"
    export_onnx(result.checkpoint, onnx_path)  # the exact form, export's default
    return result, onnx_path


@pytest.fixture(scope="session")
def tiny_float(tiny_run):
    """The same checkpoint in the float form: (result, path to .onnx)."""
    from nametool.export.onnx_export import export_onnx

    result, exact_path = tiny_run
    onnx_path = exact_path.with_name("model-float.onnx")
    export_onnx(result.checkpoint, onnx_path, form="float")
    return result, onnx_path


def make_meta(chars=tuple("abc"), end_token=".", context_size=3, min_len=1, max_len=9, known=None) -> ModelMeta:
    """A schema value for tests that need one without a trained model."""
    return ModelMeta(
        vocab=Vocab(chars=tuple(chars), end_token=end_token),
        model=ModelConfig(context_size=context_size, embed_dim=10, hidden=(200,)),
        sampling=SamplingDefaults(temperature=1.0, min_len=min_len, max_len=max_len),
        provenance=Provenance(dataset="x", dataset_sha256="0" * 64, name_count=3, seed=1, steps=10,
                              nametool_version="0.1.0", val_loss=2.0),
        known_names=None if known is None else KnownNames.from_names(known),
    )


def stop_after(calls: int):
    """A ``should_stop`` for the training loop that says stop once it has been asked ``calls`` times."""
    asked = {"n": 0}

    def should_stop() -> bool:
        asked["n"] += 1
        return asked["n"] > calls

    return should_stop


def assert_resumes_exactly(names, config, train_config, folder: Path, stop_at: int):
    """A run stopped after ``stop_at`` steps and resumed ends bit for bit as the uninterrupted run."""
    import torch

    from nametool.train.training import resume_training, run_training

    whole = run_training(names, config, train_config, folder / "whole.pt")
    run_training(names, config, train_config, folder / "part.pt", should_stop=stop_after(stop_at))
    resumed = resume_training(folder / "part.pt")
    a, b = whole.checkpoint.model.state_dict(), resumed.checkpoint.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole.losses == resumed.losses
    return whole, resumed
