"""Pictures are written, readable PNGs; the embedding projection is right."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("matplotlib")
pytest.importorskip("torch")

from nametool.train.cli import main as tool_main  # noqa: E402
from nametool.train.plots import project_2d, vowel_separation  # noqa: E402


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize(
    "args, name",
    [
        (["loss"], "loss.png"),
        (["embeddings"], "embeddings.png"),
        (["next", "--context", "ab"], "next-ab.png"),
    ],
)
def test_plots_from_a_checkpoint(tiny_run, tmp_path, args, name):
    result, _ = tiny_run
    out = tmp_path / name
    run = CliRunner().invoke(tool_main, ["plot", args[0], str(result.path), *args[1:], "--out", str(out)])
    assert run.exit_code == 0, run.output
    width, height = png_size(out)
    assert width > 400 and height > 300 and out.stat().st_size > 15_000  # a real picture, not an empty frame
    again = CliRunner().invoke(tool_main, ["plot", args[0], str(result.path), *args[1:], "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.output


def test_next_from_a_model_file(tiny_run, tmp_path):
    _, onnx_path = tiny_run
    out = tmp_path / "next.png"
    run = CliRunner().invoke(tool_main, ["plot", "next", str(onnx_path), "--context", "a", "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert png_size(out)[0] > 400


def test_two_dimensional_embeddings_are_drawn_as_they_are():
    vectors = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, -1.0]])
    points, how = project_2d(vectors)
    assert np.array_equal(points, vectors) and "itself" in how


def test_pca_keeps_the_main_direction():
    rng = np.random.default_rng(0)
    line = rng.normal(size=(50, 1)) * np.array([[3.0, 0.0, 4.0]]) + rng.normal(scale=0.01, size=(50, 3))
    points, how = project_2d(line)
    assert np.corrcoef(points[:, 0], line[:, 0])[0, 1] ** 2 > 0.99 and "PCA of 3-D" in how


def test_vowel_separation_measures_clustering():
    chars = tuple("aeioubcdfg")
    clustered = np.array([[0, 0]] * 5 + [[10, 0]] * 5, dtype=float) + np.arange(10)[:, None] * 0.01
    assert vowel_separation(clustered, chars) > 10
    assert vowel_separation(np.random.default_rng(0).normal(size=(10, 4)), chars) < 2
