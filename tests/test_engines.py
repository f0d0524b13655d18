"""Two engines, one file, the same names: numpy alone computes what onnxruntime computes.

Also: names do not depend on --batch-size (fp32 and int8 alike), and the numpy
engine refuses an operator it does not implement in one line.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from nametool.runtime import ModelFileError, NameModel, RequestError
from nametool.runtime.cli import main as run_main
from nametool.runtime.sampling import next_char_probs

BUNDLED = ["default", "default-float", "lecture"]
# max |dp| between the engines. Measured against a float64 evaluation of the bundled files
# (3,000 random contexts, AVX-512 Xeon): numpy engine (float64 products) 9.7e-8,
# onnxruntime (float32 accumulation) up to 1.0e-6 (lecture), so the engines differ by up to 1.06e-6.
ENGINE_TOLERANCE = 2e-6


def contexts_for(model: NameModel, count: int = 2000) -> np.ndarray:
    """The start of a name, every id at every position, and random contexts."""
    size, vocab = model.context_size, len(model.vocab)
    rng = np.random.default_rng(1)
    sweep = (np.arange(vocab)[:, None] + np.arange(size)[None, :]) % vocab
    return np.vstack([np.zeros((1, size), dtype=np.int64), sweep, rng.integers(0, vocab, size=(count, size))])


@pytest.mark.parametrize("name", BUNDLED)
def test_numpy_matches_onnxruntime_on_the_bundled_models(name):
    ort_model, np_model = NameModel.load(name, engine="onnxruntime"), NameModel.load(name, engine="numpy")
    assert (ort_model.engine, np_model.engine) == ("onnxruntime", "numpy")
    contexts = contexts_for(ort_model)
    diff = np.abs(next_char_probs(ort_model.logits(contexts)) - next_char_probs(np_model.logits(contexts)))
    assert diff.max() <= ENGINE_TOLERANCE


@pytest.mark.parametrize("name", BUNDLED)
def test_same_seed_same_names_with_either_engine_and_any_batch_size(name):
    names = {}
    for engine in ("onnxruntime", "numpy"):
        model = NameModel.load(name, engine=engine)
        for batch_size in (1, 7, 1024):
            names[engine, batch_size] = model.generate(300, seed=3, batch_size=batch_size)
    reference = names["onnxruntime", 1024]
    assert len(set(reference)) > 250  # real, varied names
    assert all(found == reference for found in names.values())


def test_seeded_options_give_the_same_names_with_either_engine():
    options = dict(seed=11, temperature=0.8, top_k=5, top_p=0.9, prefix="ra", unique=True, novel=True)
    by_engine = [NameModel.load("default", engine=e).generate(200, **options) for e in ("onnxruntime", "numpy")]
    assert by_engine[0] == by_engine[1] and all(n.startswith("ra") for n in by_engine[0])


def test_the_cli_says_which_engine_runs():
    runner = CliRunner()
    for engine in ("numpy", "onnxruntime"):
        info = runner.invoke(run_main, ["info", "lecture", "--engine", engine])
        assert info.exit_code == 0 and f"engine       {engine}\n" in info.output
        generated = runner.invoke(run_main, ["generate", "--model", "lecture", "--engine", engine, "--seed", "5"])
        assert generated.exit_code == 0 and len(generated.output.split()) == 10
    bad = runner.invoke(run_main, ["generate", "--engine", "tflite"])
    assert bad.exit_code == 2 and "'tflite' is not one of" in bad.output


def test_an_unknown_engine_is_a_request_error():
    with pytest.raises(RequestError, match="engine 'gpu' is not one of auto, onnxruntime, numpy"):
        NameModel.load("lecture", engine="gpu")


@pytest.fixture(scope="module")
def shaped_files(tmp_path_factory):
    """Small models of the other shapes export can write: layer norm, two layers, three members; fp32 and int8."""
    pytest.importorskip("torch")
    from nametool.export.onnx_export import export_onnx
    from nametool.runtime.schema import ModelConfig
    from nametool.train.config import TrainConfig
    from nametool.train.data import load_names
    from nametool.train.training import run_training

    from .conftest import TINY_NAMES

    folder = tmp_path_factory.mktemp("shapes")
    result = run_training(load_names(TINY_NAMES),
                          ModelConfig(context_size=4, embed_dim=6, hidden=(24, 16), norm="layer", members=3),
                          TrainConfig(steps=60, batch_size=64, lr=1e-2, warmup=5, eval_every=60, seed=3),
                          folder / "m.pt")
    paths = {"fp32": folder / "fp32.onnx", "int8": folder / "int8.onnx"}
    export_onnx(result.checkpoint, paths["fp32"], form="float")
    export_onnx(result.checkpoint, paths["int8"], form="float", quantize="int8")
    return paths


@pytest.mark.parametrize("kind", ["fp32", "int8"])
def test_numpy_runs_layer_norm_layers_and_members(shaped_files, kind):
    ort_model = NameModel.load(shaped_files[kind], engine="onnxruntime")
    np_model = NameModel.load(shaped_files[kind], engine="numpy")
    contexts = contexts_for(ort_model, 500)
    diff = np.abs(next_char_probs(ort_model.logits(contexts)) - next_char_probs(np_model.logits(contexts)))
    assert diff.max() <= ENGINE_TOLERANCE
    result = CliRunner().invoke(run_main, ["verify", str(shaped_files[kind]), "--engine", "numpy"])
    assert result.exit_code == 0, result.output


def with_tanh_as(tiny_run, folder, op_type: str):
    """The tiny run's file with its Tanh node turned into ``op_type``."""
    onnx = pytest.importorskip("onnx")
    _, onnx_path = tiny_run
    proto = onnx.load(str(onnx_path))
    next(n for n in proto.graph.node if n.op_type == "Tanh").op_type = op_type
    path = folder / f"{op_type.lower()}.onnx"
    onnx.save(proto, str(path))
    return path


def test_the_numpy_engines_own_fused_step_is_not_accepted_from_a_file(tiny_float, tmp_path):
    path = with_tanh_as(tiny_float, tmp_path, "GatherSum")
    with pytest.raises(ModelFileError, match="the numpy engine cannot run operator GatherSum"):
        NameModel.load(path, engine="numpy")


def test_an_operator_numpy_does_not_run_is_named_in_one_line(tiny_float, tmp_path):
    with_tanh_as(tiny_float, tmp_path, "Erf")  # onnxruntime runs it; nametool never exports it
    NameModel.load(tmp_path / "erf.onnx", engine="onnxruntime")
    with pytest.raises(ModelFileError, match="the numpy engine cannot run operator Erf"):
        NameModel.load(tmp_path / "erf.onnx", engine="numpy")
    result = CliRunner().invoke(run_main, ["generate", "--model", str(tmp_path / "erf.onnx"), "--engine", "numpy"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "operator Erf" in result.output


def test_auto_runs_a_file_numpy_cannot_on_onnxruntime(tiny_float, tmp_path):
    """A file of an older nametool (dynamic int8 operators) still generates by default."""
    with_tanh_as(tiny_float, tmp_path, "Erf")
    model = NameModel.load(tmp_path / "erf.onnx", large=False)
    assert model.engine == "onnxruntime" and len(model.generate(5, seed=1)) == 5
    result = CliRunner().invoke(run_main, ["generate", "--model", str(tmp_path / "erf.onnx"), "-n", "3"])
    assert result.exit_code == 0 and len(result.output.split()) == 3


def tiny_plain_graph(vocab: int, embed: int, *, bias: bool, trans_b: bool, members: int = 2):
    """A plain first layer per member (Gather, Reshape, Gemm), two members' outputs added: (file bytes,
    a float64 evaluation of the same maths)."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(vocab * 10 + embed)
    context, hidden, nodes, inits, outs = 3, 8, [], [], []
    inits.append(numpy_helper.from_array(np.array([-1, context * embed], dtype=np.int64), "shape"))
    weights = []
    for m in range(members):
        table = rng.normal(size=(vocab, embed)).astype(np.float32)
        w1 = rng.normal(size=(hidden, context * embed)).astype(np.float32)
        b1 = rng.normal(size=hidden).astype(np.float32) if bias else None
        weights.append((table, w1, b1))
        inits += [numpy_helper.from_array(table, f"E{m}"),
                  numpy_helper.from_array(w1 if trans_b else w1.T.copy(), f"W{m}")]
        gemm_inputs = [f"r{m}", f"W{m}"]
        if bias:
            inits.append(numpy_helper.from_array(b1, f"b{m}"))
            gemm_inputs.append(f"b{m}")
        nodes += [helper.make_node("Gather", [f"E{m}", "context"], [f"g{m}"]),
                  helper.make_node("Reshape", [f"g{m}", "shape"], [f"r{m}"]),
                  helper.make_node("Gemm", gemm_inputs, [f"h{m}"], transB=int(trans_b))]
        outs.append(f"h{m}")
    nodes.append(helper.make_node("Add", outs, ["logits"]) if members == 2 else
                 helper.make_node("Identity", outs, ["logits"]))
    inputs = [helper.make_tensor_value_info("context", TensorProto.INT64, ["batch", context])]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", hidden])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()

    def reference(ids):
        total = 0
        for table, w1, b1 in weights:
            x = table.astype(np.float64)[ids].reshape(len(ids), -1)
            total = total + x @ w1.astype(np.float64).T + (0 if b1 is None else b1)
        return total
    return data, reference


@pytest.mark.parametrize("bias, trans_b", [(True, True), (False, True), (True, False), (False, False)])
def test_numpy_folds_a_plain_first_layer_with_or_without_bias_either_layout(bias, trans_b):
    from nametool.runtime.numpy_engine import NumpyGraph
    from nametool.runtime.onnxfile import read_onnx

    data, reference = tiny_plain_graph(5, 4, bias=bias, trans_b=trans_b)
    graph = NumpyGraph(read_onnx(data))
    steps = [node.op_type for node in graph._steps]
    assert steps.count("GatherSum") == 2 and steps.count("Add") == 2 + 2 * bias, steps  # one ids step, shared
    ids = np.random.default_rng(0).integers(0, 5, (50, 3))
    assert np.abs(graph.run(ids) - reference(ids)).max() < 1e-5


def test_numpy_keeps_a_plain_first_layer_whose_tables_would_be_too_large():
    from nametool.runtime.numpy_engine import MAX_TABLE_GROWTH, NumpyGraph
    from nametool.runtime.onnxfile import read_onnx

    embed = 2
    data, reference = tiny_plain_graph(embed * MAX_TABLE_GROWTH + 1, embed, bias=True, trans_b=True, members=1)
    graph = NumpyGraph(read_onnx(data))
    assert not graph.folded and "Gemm" in [node.op_type for node in graph._steps]
    ids = np.random.default_rng(0).integers(0, embed * MAX_TABLE_GROWTH + 1, (50, 3))
    assert np.abs(graph.run(ids) - reference(ids)).max() < 1e-5
