"""The export contract: metadata, graph cross-checks, info, verify, int8, opsets, atomic writes."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

onnx = pytest.importorskip("onnx")

from nametool.export import onnx_export, quantize  # noqa: E402
from nametool.export.onnx_export import export_onnx, parity, validation_contexts  # noqa: E402
from nametool.runtime import ModelFileError, NameModel, NametoolError  # noqa: E402
from nametool.runtime.cli import main as run_main  # noqa: E402
from nametool.runtime.schema import METADATA_KEY  # noqa: E402
from nametool.runtime.windows import build_windows  # noqa: E402

from .test_parity import max_prob_diff  # noqa: E402


def rewrite(src, dst, *, payload=None, proto_edit=None):
    """Copy an exported file, changing its metadata JSON and/or its graph."""
    proto = onnx.load(str(src))
    if payload is not None:
        entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
        data = json.loads(entry.value)
        payload(data)
        entry.value = json.dumps(data)
    if proto_edit is not None:
        proto_edit(proto)
    onnx.save(proto, str(dst))
    return dst


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(batch, vocab) log-probabilities, written here so the int8 test does not check quantize with its own math."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_metadata_carries_the_schema_with_export_provenance(tiny_float):
    result, onnx_path = tiny_float
    meta = NameModel.load(onnx_path).meta
    assert meta.vocab == result.checkpoint.meta.vocab and meta.model == result.checkpoint.meta.model
    prov = meta.provenance
    assert prov.onnx_version == onnx.__version__ and prov.exported and prov.torch_version
    assert prov.dataset == "tiny_names.txt" and prov.data_notice is None
    size, chars = meta.model.context_size, meta.vocab.chars
    assert meta.golden is not None and len(meta.golden.contexts) == 8 + len(chars) and meta.golden.contexts[0] == ""
    full = [c for c in meta.golden.contexts if len(c) == size]
    assert all({c[i] for c in full} == set(chars) for i in range(size))  # every character at every position
    assert meta.quantization is None


@pytest.mark.parametrize(
    "payload, message",
    [
        (lambda d: d["model"].update(context_size=4), "disagrees with context_size 4"),
        (lambda d: d["vocab"].update(chars=d["vocab"]["chars"] + ["ü"]), "disagrees with the vocabulary size"),
        (lambda d: d.update(schema_version=7), "schema version 7 is not one this nametool reads (1)"),
        (lambda d: d.pop("provenance"), "missing the 'provenance' section"),
        (lambda d: d["vocab"].update(chars="abc"), "vocab.chars must be a list"),
    ],
)
def test_metadata_that_disagrees_is_refused(tiny_float, tmp_path, payload, message):
    _, onnx_path = tiny_float
    bad = rewrite(onnx_path, tmp_path / "bad.onnx", payload=payload)
    with pytest.raises(ModelFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        NameModel.load(bad)


def test_renamed_graph_input_is_refused(tiny_float, tmp_path):
    _, onnx_path = tiny_float

    def rename(proto):
        old = proto.graph.input[0].name
        proto.graph.input[0].name = "x"
        for node in proto.graph.node:
            node.input[:] = ["x" if i == old else i for i in node.input]

    bad = rewrite(onnx_path, tmp_path / "bad.onnx", proto_edit=rename)
    with pytest.raises(ModelFileError, match=r"graph has inputs \['x'\]"):
        NameModel.load(bad)


def test_wrong_dtypes_are_refused(tiny_float, tmp_path):
    from onnx import TensorProto, helper

    _, onnx_path = tiny_float
    meta_json = NameModel.load(onnx_path).meta.to_json()
    graph = helper.make_graph(
        [helper.make_node("Identity", ["context"], ["logits"])], "g",
        [helper.make_tensor_value_info("context", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    helper.set_model_props(model, {METADATA_KEY: meta_json})
    path = tmp_path / "float_input.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelFileError, match=r"graph takes tensor\(float\) and gives tensor\(float\)"):
        NameModel.load(path)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_files_are_refused(tiny_float, tmp_path, fraction):
    _, onnx_path = tiny_float
    data = onnx_path.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelFileError, match=re.escape(f"{cut}: not a loadable ONNX model (")):
        NameModel.load(cut)


def test_info_human_and_json(tiny_float):
    _, onnx_path = tiny_float
    runner = CliRunner()
    text = runner.invoke(run_main, ["info", str(onnx_path)])
    assert text.exit_code == 0, text.output
    assert "vocabulary" in text.output and "parameters" in text.output and "tiny_names.txt" in text.output
    as_json = runner.invoke(run_main, ["info", str(onnx_path), "--json"])
    facts = json.loads(as_json.output)
    config = NameModel.load(onnx_path).meta.model
    expected = sum(int(np.prod(t.dims)) for t in onnx.load(str(onnx_path)).graph.initializer
                   if t.data_type == onnx.TensorProto.FLOAT)
    assert facts["model"]["parameters"] == config.parameter_count(facts["vocab"]["size"]) == expected
    assert facts["file_bytes"] == onnx_path.stat().st_size
    assert facts["provenance"]["steps"] == 300 and facts["golden_contexts"] == 8 + facts["vocab"]["size"] - 1


def test_verify_reports_digests_and_golden_rows(tiny_float):
    _, onnx_path = tiny_float
    good = CliRunner().invoke(run_main, ["verify", str(onnx_path)])
    assert good.exit_code == 0, good.output
    assert "digests of 11 tensors, the graph and 10 metadata sections match; 33 golden contexts" in good.output


def zero_embedding_row(char):
    def edit(proto):
        meta = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
        row = 1 + meta["vocab"]["chars"].index(char)
        for tensor in proto.graph.initializer:
            if tensor.name.endswith("embed.weight"):
                values = onnx.numpy_helper.to_array(tensor).copy()
                values[row] = 0
                tensor.CopyFrom(onnx.numpy_helper.from_array(values, tensor.name))
    return edit


def flip_one_bit(proto):
    tensor = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
    raw = bytearray(tensor.raw_data)
    raw[len(raw) // 2] ^= 0x01  # the lowest mantissa bit of one weight
    tensor.raw_data = bytes(raw)


def swap_letters(first, second):
    def edit(data):
        chars = data["vocab"]["chars"]
        i, j = chars.index(first), chars.index(second)
        chars[i], chars[j] = chars[j], chars[i]
    return edit


TAMPERING = {
    "zero the embedding row of z": ({"proto_edit": zero_embedding_row("z")}, "weight 'members.0.embed.weight'"),
    "flip one bit of one weight": ({"proto_edit": flip_one_bit}, "differs from export"),
    "swap q and x in the vocabulary": ({"payload": swap_letters("q", "x")}, "metadata section 'vocab'"),
    "edit the default temperature": ({"payload": lambda d: d["sampling"].update(temperature=0.8)},
                                     "metadata section 'sampling'"),
    "add a metadata entry": ({"proto_edit": lambda proto: proto.metadata_props.add(key="note", value="x")},
                             "metadata entry 'note' was added"),
}


@pytest.mark.parametrize("name", ["default", "default-float", "lecture"])
@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
def test_the_bundled_models_verify_with_either_engine(name, engine):
    result = CliRunner().invoke(run_main, ["verify", name, "--engine", engine])
    assert result.exit_code == 0, result.output
    verdict = "max |dp|" if name == "default-float" else "integer masses all equal"
    assert f"on {engine}, {verdict}" in result.output


@pytest.mark.parametrize("case", TAMPERING)
def test_every_change_after_export_fails_verify_and_says_what(case, tmp_path):
    from nametool.runtime.model import bundled_model_path

    edit, expected = TAMPERING[case]
    src = bundled_model_path()
    tampered = rewrite(src, tmp_path / "tampered.onnx", **edit)
    result = CliRunner().invoke(run_main, ["verify", str(tampered)])
    assert result.exit_code == 1, result.output
    assert "verify failed: changed since export: " in result.output and expected in result.output
    assert result.output.count("\n") == 1


def halve_a_table_row(proto):
    """An exact file's first-layer table: one row halved (what the graph reads, unlike the embedding)."""
    tensor = next(t for t in proto.graph.initializer if t.name == "exact.tables")
    values = onnx.numpy_helper.to_array(tensor).copy()
    values[1] //= 2
    tensor.CopyFrom(onnx.numpy_helper.from_array(values, tensor.name))


@pytest.mark.parametrize("name, edit, verdict", [("default-float", zero_embedding_row("z"), "exceeds tolerance"),
                                                 ("default", halve_a_table_row, "golden contexts on numpy, integer masses 1 differ")])
def test_a_weight_edit_that_keeps_the_digests_still_fails_the_golden_rows(tmp_path, name, edit, verdict):
    """The second line of defence: a weight changed and its digest recomputed, as an editor might."""
    from nametool.runtime.model import bundled_model_path
    from nametool.runtime.onnxfile import weight_digests

    def edit_and_redigest(proto):
        edit(proto)
        entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
        data = json.loads(entry.value)
        data["integrity"]["tensors"], data["integrity"]["graph"] = weight_digests(proto.SerializeToString())
        entry.value = json.dumps(data, ensure_ascii=False, sort_keys=True)

    tampered = rewrite(bundled_model_path(f"{name}.onnx"), tmp_path / "t.onnx", proto_edit=edit_and_redigest)
    result = CliRunner().invoke(run_main, ["verify", str(tampered)])
    assert result.exit_code == 1 and verdict in result.output, result.output


def test_int8_stays_within_documented_drift(tiny_float, tmp_path):
    result, onnx_path = tiny_float
    out = tmp_path / "int8.onnx"
    report = export_onnx(result.checkpoint, out, form="float", quantize="int8")
    q = NameModel.load(out).meta.quantization
    assert q == report.quantization and q.scheme == "int8-weights"
    # the recorded drift, measured again here from the two files on every validation window
    meta = result.checkpoint.meta
    contexts, targets = build_windows(result.checkpoint.splits["val"], meta.vocab, meta.model.context_size)
    fp32_logp, int8_logp = (log_softmax(NameModel.load(path).logits(contexts)) for path in (onnx_path, out))
    mean_kl = float((np.exp(fp32_logp) * (fp32_logp - int8_logp)).sum(axis=1).mean())
    rows = np.arange(len(targets))
    assert q.mean_kl == pytest.approx(mean_kl, rel=1e-3)
    assert q.val_loss_fp32 == pytest.approx(-fp32_logp[rows, targets].mean(), abs=1e-6)
    assert q.val_loss == pytest.approx(-int8_logp[rows, targets].mean(), abs=1e-6)
    assert mean_kl <= 0.01 and q.val_loss - q.val_loss_fp32 <= 0.01  # docs/int8.md's drift gate
    assert mean_kl > 0  # really quantized ...
    assert parity(result.checkpoint, NameModel.load(out), validation_contexts(result.checkpoint)) > 1e-5
    assert report.size_bytes < report.fp32_size_bytes
    int8 = {t.name: t.data_type for t in onnx.load(str(out)).graph.initializer}
    assert sum(1 for t in int8.values() if t == onnx.TensorProto.INT8) == 3  # the three hidden and output weights
    assert CliRunner().invoke(run_main, ["verify", str(out)]).exit_code == 0


def test_int8_weights_round_trip_within_half_a_step():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(6, 40)).astype(np.float32)
    weights[2] = 0  # a dead channel keeps a usable scale
    for axis in (0, 1):
        q, scale = quantize.quantize_weights(weights, axis)
        shape = (-1, 1) if axis == 0 else (1, -1)
        back = q.astype(np.float32) * scale.reshape(shape)
        assert q.dtype == np.int8 and np.abs(q).max() == quantize.INT8_MAX
        assert np.all(np.abs(back - weights) <= scale.reshape(shape) / 2 + 1e-7)


def test_int8_beyond_the_bounds_is_refused_and_writes_nothing(tiny_float, tmp_path, monkeypatch):
    result, _ = tiny_float
    monkeypatch.setattr(quantize, "MAX_MEAN_KL", 1e-12)
    out = tmp_path / "int8.onnx"
    with pytest.raises(quantize.QuantizationDrift, match="int8 drifts too far"):
        export_onnx(result.checkpoint, out, form="float", quantize="int8")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("opset", [onnx_export.MIN_OPSET, 21])
def test_exports_load_and_run_at_each_opset(tiny_float, tmp_path, opset):
    result, _ = tiny_float
    out = tmp_path / f"opset{opset}.onnx"
    report = export_onnx(result.checkpoint, out, form="float", opset=opset)
    proto = onnx.load(str(out))
    assert next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) == opset
    assert report.max_abs_diff is not None  # export compared the file with PyTorch; so does this test, on its own:
    worst = max_prob_diff(result.checkpoint, NameModel.load(out), validation_contexts(result.checkpoint))
    assert worst <= 1e-5
    assert len(NameModel.load(out).generate(5, seed=0)) == 5


def test_opset_below_the_minimum_is_refused(tiny_float, tmp_path):
    result, _ = tiny_float
    with pytest.raises(NametoolError, match="opset 17 is below the minimum 18"):
        export_onnx(result.checkpoint, tmp_path / "m.onnx", opset=17)


def test_existing_output_needs_force(tiny_float, tmp_path):
    result, _ = tiny_float
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(NametoolError, match=re.escape(f"{out} exists; pass --force to replace it")):
        export_onnx(result.checkpoint, out)
    assert out.read_bytes() == b"precious"
    export_onnx(result.checkpoint, out, force=True)
    assert NameModel.load(out).meta.golden is not None


def test_failed_check_leaves_nothing_behind(tiny_float, tmp_path, monkeypatch):
    result, _ = tiny_float
    out = tmp_path / "m.onnx"
    out.write_bytes(b"precious")
    monkeypatch.setattr(onnx_export, "parity", lambda *args: 1.0)
    with pytest.raises(onnx_export.ExportMismatch, match="disagree by 1.00e\\+00"):
        export_onnx(result.checkpoint, out, form="float", force=True)
    assert out.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("where, message", [("missing/m.onnx", "{tmp_path}/missing: no such folder"),
                                             ("/proc/m.onnx", "/proc/m.onnx: cannot write (")],
                         ids=["missing folder", "unwritable folder"])
def test_unwritable_destinations_are_clear_errors(tiny_float, tmp_path, where, message):
    result, _ = tiny_float
    with pytest.raises(NametoolError, match=re.escape(message.format(tmp_path=tmp_path))):
        export_onnx(result.checkpoint, tmp_path / where)


def test_interrupted_export_leaves_no_file(tiny_float, tmp_path, monkeypatch):
    result, _ = tiny_float
    real_save = onnx.save_model

    def save_then_interrupt(proto, path, *args, **kwargs):
        real_save(proto, path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx, "save_model", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_onnx(result.checkpoint, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
