"""The folded first layer: the same model, computed as per-position table look-ups.

Export folds by default and ``--no-fold`` keeps the lecture's form; both files of one
checkpoint must give the same distributions (within float tolerance), the same seeded
names, and the folded one must be no larger and keep the embedding table readable.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from nametool.runtime.cli import main as run_main
from nametool.runtime.model import ROWS_PER_CALL, NameModel, choose_engine
from nametool.runtime.sampling import next_char_probs

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from nametool.export.onnx_export import export_onnx, torch_probs  # noqa: E402
from nametool.runtime.schema import ModelConfig  # noqa: E402
from nametool.train.config import TrainConfig  # noqa: E402
from nametool.train.data import load_names  # noqa: E402
from nametool.train.training import run_training  # noqa: E402

from .conftest import TINY_NAMES  # noqa: E402

SHAPES = {
    "lecture-like": ModelConfig(context_size=3, embed_dim=6, hidden=(24,)),
    "layer norm, two layers, three members": ModelConfig(context_size=4, embed_dim=6, hidden=(24, 16), norm="layer",
                                                         members=3),
}


@pytest.fixture(scope="module", params=list(SHAPES))
def pair(request, tmp_path_factory):
    """(checkpoint, {form: path}) for one shape: folded and plain, fp32 and int8."""
    folder = tmp_path_factory.mktemp("fold")
    result = run_training(load_names(TINY_NAMES), SHAPES[request.param],
                          TrainConfig(steps=80, batch_size=64, lr=1e-2, warmup=5, eval_every=80, seed=5),
                          folder / "m.pt")
    files = {}
    for quantize in (None, "int8"):
        for fold in (True, False):
            path = folder / f"{quantize or 'fp32'}-{'folded' if fold else 'plain'}.onnx"
            export_onnx(result.checkpoint, path, form="float", quantize=quantize, fold=fold)
            files[quantize or "fp32", "folded" if fold else "plain"] = path
    return result.checkpoint, files


def contexts(model: NameModel, count: int = 600) -> np.ndarray:
    rng = np.random.default_rng(4)
    return rng.integers(0, len(model.vocab), size=(count, model.context_size))


def test_the_metadata_and_the_graph_say_which_form(pair):
    _, files = pair
    for (kind, form), path in files.items():
        model = NameModel.load(path)
        assert model.meta.graph.first_layer == form
        ops = [node.op_type for node in onnx.load(str(path)).graph.node]
        assert ("ReduceSum" in ops) == (form == "folded"), (kind, form, ops)
    info = CliRunner().invoke(run_main, ["info", str(files["fp32", "folded"])])
    assert "first layer folded" in info.output


def test_folded_matches_pytorch_and_the_plain_file(pair):
    ckpt, files = pair
    folded, plain = NameModel.load(files["fp32", "folded"]), NameModel.load(files["fp32", "plain"])
    x = contexts(folded)
    p_folded = next_char_probs(folded.logits(x))
    assert np.abs(p_folded - torch_probs(ckpt, x)).max() <= 1e-5
    assert np.abs(p_folded - next_char_probs(plain.logits(x))).max() <= 1e-5
    int8_folded, int8_plain = NameModel.load(files["int8", "folded"]), NameModel.load(files["int8", "plain"])
    assert np.abs(next_char_probs(int8_folded.logits(x)) - next_char_probs(int8_plain.logits(x))).max() <= 1e-5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_same_seed_gives_the_same_names_folded_or_not(pair, seed):
    _, files = pair
    for kind in ("fp32", "int8"):
        by_form = {form: NameModel.load(files[kind, form]).generate(300, seed=seed) for form in ("folded", "plain")}
        assert by_form["folded"] == by_form["plain"], kind


def test_the_folded_file_is_no_larger_and_keeps_the_embedding_table(pair):
    ckpt, files = pair
    for kind in ("fp32", "int8"):
        assert files[kind, "folded"].stat().st_size <= files[kind, "plain"].stat().st_size
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(files["fp32", "folded"])).graph.initializer}
    tables = [name for name in stored if name.endswith("embed.weight")]
    assert len(tables) == ckpt.meta.model.members
    first = ckpt.model.state_dict()[tables[0]].numpy()
    assert np.array_equal(stored[tables[0]], first)


@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
@pytest.mark.parametrize("source", ["test-folded", "default", "lecture"])
def test_splitting_a_batch_into_calls_changes_no_logit(pair, engine, source):
    """Bit for bit. With numpy's float32 matmul, OpenBLAS gave a row other logits in a call of
    1, 2, 7 or 64 rows than in one of 1,024 (up to 1.4e-5 for the default model, on AVX-512 and
    AVX2 alike); the numpy engine now accumulates its products in float64."""
    _, files = pair
    model = NameModel.load(files["fp32", "folded"] if source == "test-folded" else source, engine=engine)
    x = contexts(model, 1024)
    model.rows_per_call = 1 << 30
    whole = model.logits(x)
    for rows in (1, 2, 7, 64):
        model.rows_per_call = rows
        assert np.array_equal(model.logits(x), whole), rows


def test_numpy_runs_the_folded_graph_as_onnxruntime_does(pair):
    _, files = pair
    for kind in ("fp32", "int8"):
        a = NameModel.load(files[kind, "folded"], engine="onnxruntime")
        b = NameModel.load(files[kind, "folded"], engine="numpy")
        x = contexts(a)
        assert np.abs(next_char_probs(a.logits(x)) - next_char_probs(b.logits(x))).max() <= 1e-6


def test_rows_per_call_is_set_for_every_engine_and_form():
    assert set(ROWS_PER_CALL) == {(e, f) for e in ("onnxruntime", "numpy") for f in ("folded", "plain")}
    assert NameModel.load("default", engine="numpy").rows_per_call == ROWS_PER_CALL["numpy", "folded"]
    assert NameModel.load("default-float", engine="onnxruntime").rows_per_call == \
        ROWS_PER_CALL["onnxruntime", "folded"]


def test_numpy_folds_a_plain_file_into_the_folded_files_logits(pair):
    """Bit for bit: the engine makes the tables as the folded graph's constant MatMul does."""
    _, files = pair
    for kind in ("fp32", "int8"):
        plain = NameModel.load(files[kind, "plain"], engine="numpy")
        folded = NameModel.load(files[kind, "folded"], engine="numpy")
        steps = [node.op_type for node in plain._backend._graph._steps]
        assert "GatherSum" in steps and "Reshape" not in steps, (kind, steps)
        x = contexts(plain, 1024)
        assert np.array_equal(plain.logits(x), folded.logits(x)), kind


def test_auto_runs_small_requests_on_numpy_and_large_ones_on_onnxruntime():
    assert choose_engine("auto", large=False) == "numpy"
    assert choose_engine("auto", large=True) == "onnxruntime"
    assert choose_engine("onnxruntime", large=False) == "onnxruntime"
