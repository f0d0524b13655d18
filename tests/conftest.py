"""Shared fixtures: one tiny model, trained and exported once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_NAMES = Path(__file__).parent / "data" / "tiny_names.txt"
BLOCKER = Path(__file__).parent / "block_imports.py"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A small model on the tiny dataset: (checkpoint, path to checkpoint, path to .onnx, result)."""
    pytest.importorskip("torch")
    from nametool.export.onnx_export import export_onnx
    from nametool.runtime.schema import ModelConfig
    from nametool.train.data import load_names
    from nametool.train.config import TrainConfig
    from nametool.train.pipeline import run_training

    folder = tmp_path_factory.mktemp("tiny_run")
    names = load_names(TINY_NAMES)
    result = run_training(
        names,
        ModelConfig(context_size=3, embed_dim=8, hidden=(32, 32)),
        TrainConfig(steps=300, batch_size=64, lr=1e-2, warmup=20, eval_every=100, seed=7),
        folder / "model.pt",
    )
    onnx_path = folder / "model.onnx"
    export_onnx(result.checkpoint, onnx_path)
    return result, onnx_path
