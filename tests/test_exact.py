"""The exact form: the spec's arithmetic, its checks, and the same names everywhere.

The names of a seed are pinned by the SHA-256 of 100,000 of them: a machine whose CPU,
BLAS or onnxruntime kernels differ must print the very same text.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from nametool.runtime import NameModel
from nametool.runtime import exact as ex
from nametool.runtime.errors import ModelFileError
from nametool.runtime.schema import exp_table_problem
from nametool.runtime.uniforms import UniformStream

DOCS = Path(__file__).resolve().parents[1] / "docs" / "exact.md"
# 100,000 names of seed 2026 at batch 4,096, joined by newlines: SHA-256 (onnxruntime on the
# machine that exported the files; every engine, batch size and machine must give the same)
PINNED = {"lecture": "bd9980bc82bc6d2b82e02c7287de49676863153dc48307f472f4673f834f9235",
          "default": "60dfae6a737e56e7eee92d1677c4b62ce1c5f607cd0714c64e98f615a1b080f8"}

# docs/exact.md's test vectors
Z = np.array([[[52000, -18000, 30000, 1000], [-40000, 9000, 61000, 2000]]], dtype=np.float32)
MULTIPLIERS = np.array([[300000, 310000, 290000, 305000], [250000, 260000, 240000, 255000]], dtype=np.int64)
P = [13619091, 967075, 18015443, 952819]


def digest(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def test_the_exp_table_is_the_documented_one():
    table = ex.make_exp_table()
    assert len(table) == 3018 and table[:4].tolist() == [65536, 65280, 65026, 64772]
    assert table[-4:].tolist() == [1, 1, 1, 0] and exp_table_problem(tuple(table.tolist())) is None
    assert "3,018 entries: it starts 65536, 65280, 65026, 64772" in DOCS.read_text()


def test_the_spec_vectors():
    """Each step by hand against the numbers docs/exact.md prints (which these also check)."""
    table = ex.make_exp_table()
    logits = ex.member_logits(Z, MULTIPLIERS)
    assert logits.tolist() == [[[930, -333, 519, 18], [-596, 139, 873, 30]]]
    assert ex.mixture(logits, table)[0].tolist() == P
    assert ex.mixture(logits, table, t16=ex.temperature_fixed(0.5))[0].tolist() == [16114092, 54759, 17349612, 35964]
    hotter = ex.mixture(logits, table, t16=ex.temperature_fixed(2.0))
    assert hotter[0].tolist() == [10495761, 3525670, 15696556, 3836441]
    masked = ex.mixture(logits, table, allowed=np.array([[False, True, True, True]]))
    assert masked[0].tolist() == [0, 1382971, 29588277, 2583180]
    mass = np.array([P])
    for kept in (ex.filter_mass(mass, top_k=2), ex.filter_mass(mass, p16=ex.to_fixed(0.6)),
                 ex.filter_mass(mass, m16=ex.to_fixed(0.1))):
        assert kept[0].tolist() == [13619091, 0, 18015443, 0]
    assert ex.exact_probs(Z, MULTIPLIERS, table, temperature=0)[0].tolist() == [0, 0, 1, 0]
    u24 = ex.uniform_bits(UniformStream(0).random(4))
    assert u24.tolist() == [14819496, 7239838, 443485, 16288696]
    assert ex.draw_ids(np.repeat(mass, 4, axis=0), u24).tolist() == [2, 1, 0, 2]
    text = DOCS.read_text()
    assert all(str(v) in text for v in (*P, 16114092, 1382971, 14819496, 32577388))


def test_ties_go_to_the_lower_id_and_zero_mass_is_never_drawn():
    mass = np.array([[5, 0, 9, 9, 9]])
    assert ex.filter_mass(mass, top_k=2)[0].tolist() == [0, 0, 9, 9, 0]
    assert ex.exact_probs(np.zeros((1, 1, 5), np.float32), np.ones((1, 5), np.int64), ex.make_exp_table(),
                          temperature=0)[0].tolist() == [1, 0, 0, 0, 0]
    u24 = np.arange(0, 1 << 24, 4099, dtype=np.int64)
    drawn = ex.draw_ids(np.repeat(mass, len(u24), axis=0), u24)
    assert 1 not in drawn and set(drawn) == {0, 2, 3, 4}


@pytest.mark.parametrize("value, fixed", [(1.0, 65536), (0.8, 52429), (2 ** -17, 0), (3 * 2 ** -17, 2),
                                          (1e300, ex.MAX_T16), (1.7e308, ex.MAX_T16)])
def test_fixed_point_values_round_half_to_even(value, fixed):
    assert ex.temperature_fixed(value) == fixed


def test_the_bundled_exact_files_say_so_and_verify():
    for name in ("default", "lecture"):
        model = NameModel.load(name)
        assert model.form == "exact" and model.meta.golden.tolerance == 0
        assert max(model.meta.exact.bounds.values()) < 2 ** 24
        assert model.integer_logits(np.zeros((2, model.context_size), np.int64)).shape == (
            2, model.meta.model.members, len(model.vocab))
    assert NameModel.load("default-float").form == "float"


@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
@pytest.mark.parametrize("name", sorted(PINNED))
def test_100000_names_are_the_pinned_ones_on_either_engine(name, engine):
    model = NameModel.load(name, engine=engine)
    names = model.generate(100_000, seed=2026, batch_size=4096)
    assert len(names) == 100_000 and len(set(names)) > 80_000
    assert digest(names) == PINNED[name]
    small = model.generate(2_000 if name == "default" else 20_000, seed=2026, batch_size=7)
    assert small == names[:len(small)]
    assert model.generate(300, seed=2026, batch_size=1) == names[:300]


@pytest.mark.parametrize("batch", [1, 7, 4096])
@pytest.mark.parametrize("engine", ["onnxruntime", "numpy"])
def test_the_engines_integers_equal_torchs_on_every_validation_context(tiny_run, engine, batch):
    pytest.importorskip("torch")
    from nametool.export.sealing import validation_contexts
    from nametool.runtime.onnxfile import read_onnx
    from nametool.train.exact import exact_member_logits

    result, onnx_path = tiny_run
    model = NameModel.load(onnx_path, engine=engine)
    meta, contexts = model.meta, validation_contexts(result.checkpoint)
    expected = exact_member_logits(read_onnx(onnx_path.read_bytes()).initializers, contexts,
                                   vocab_size=len(meta.vocab), members=meta.model.members,
                                   layers=len(meta.model.hidden))
    got = np.concatenate([model.integer_logits(contexts[i:i + batch]) for i in range(0, len(contexts), batch)])
    assert len(contexts) > 100 and np.array_equal(got, expected)
    assert np.array_equal(got, np.round(got)) and np.abs(got).max() < 2 ** 24


def rewritten(src: Path, dst: Path, *, tensors=None, payload=None, edit=None) -> Path:
    """A copy of an exact file with initializers replaced (name -> array, or None to drop), its
    metadata JSON edited, or ``edit(proto)`` applied; the digests are left as export wrote them."""
    import json

    import onnx
    from onnx import numpy_helper

    proto = onnx.load(str(src))
    for name, value in (tensors or {}).items():
        kept = [t for t in proto.graph.initializer if t.name != name]
        del proto.graph.initializer[:]
        proto.graph.initializer.extend(kept)
        if value is not None:
            proto.graph.initializer.append(numpy_helper.from_array(value, name))
    if payload is not None:
        entry = next(p for p in proto.metadata_props if p.key == "nametool")
        data = json.loads(entry.value)
        payload(data["exact"])
        entry.value = json.dumps(data)
    if edit is not None:
        edit(proto)
    onnx.save(proto, str(dst))
    return dst


def stored(path: Path) -> dict:
    from nametool.runtime.onnxfile import read_onnx

    return read_onnx(path.read_bytes()).initializers


BAD_FILES = {
    "tables past 2^24": (lambda a: {ex.TABLES: np.full_like(a[ex.TABLES], 32767),
                                    ex.bias_name(1): np.full_like(a[ex.bias_name(1)], 2 ** 24)}, None,
                         "a partial sum of layer1 can reach"),
    "tanh table missing": (lambda a: {ex.TANH: None}, None, "exact.tanh"),
    "tanh table of even length": (lambda a: {ex.TANH: a[ex.TANH][:-1]}, None, "odd number"),
    "tanh table beyond 255": (lambda a: {ex.TANH: a[ex.TANH] * 2}, None, "values beyond 255 in magnitude"),
    "scale not a power of two": (lambda a: {ex.scale_name(1): a[ex.scale_name(1)] * np.float32(0.75)}, None,
                                 "power of two"),
    "float tables": (lambda a: {ex.TABLES: a[ex.TABLES].astype(np.float32)}, None, "expected int16 integers"),
    "exp table cut": (None, lambda e: e.update(exp_table=e["exp_table"][:-1]), "end with one 0"),
    "exp table rising": (None, lambda e: e["exp_table"].__setitem__(5, 65500), "fall"),
    "exp table entry past int64": (None, lambda e: e["exp_table"].__setitem__(5, 2 ** 70), "integers from 0 to"),
    "multiplier past int64": (None, lambda e: e["multipliers"][0].__setitem__(0, 2 ** 70), "must lie in 1..2"),
    "tanh table of int64": (lambda a: {ex.TANH: np.full(len(a[ex.TANH]), np.iinfo(np.int64).min)}, None,
                            "expected int16 integers"),
    "stated bounds loosened": (None, lambda e: e["bounds"].update(layer1=1), "differ from the stored"),
    "multipliers missing a row": (None, lambda e: e.update(multipliers=e["multipliers"][:-1]),
                                  "exact.multipliers must be 1 rows of"),
}


def add_becomes_mul(proto):
    next(node for node in proto.graph.node if node.output[0] == "z.out").op_type = "Mul"


def offsets_all_zero(proto):
    from onnx import numpy_helper

    tensor = next(t for t in proto.graph.initializer if t.name == "exact.offsets")
    tensor.CopyFrom(numpy_helper.from_array(np.zeros(len(tensor.int64_data) or tensor.dims[0], np.int64),
                                            "exact.offsets"))


GRAPH_EDITS = {"an Add become a Mul": (add_becomes_mul, "graph node"),
               "offsets pointing every position at the first": (offsets_all_zero, "'exact.offsets'")}


@pytest.mark.parametrize("case", sorted(GRAPH_EDITS))
def test_a_graph_that_is_not_the_exact_forms_is_refused(tiny_run, tmp_path, case):
    """Integers in bounds prove nothing of a graph that computes something else with them."""
    edit, message = GRAPH_EDITS[case]
    bad = rewritten(tiny_run[1], tmp_path / "bad.onnx", edit=edit)
    for engine in ("onnxruntime", "numpy"):
        with pytest.raises(ModelFileError, match=f"exact form: .*{message}"):
            NameModel.load(bad, engine=engine)


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_broken_exact_file_fails_to_load_in_one_line(tiny_run, tmp_path, case):
    from click.testing import CliRunner

    from nametool.runtime.cli import main as run_main

    tensors, payload, message = BAD_FILES[case]
    _, onnx_path = tiny_run
    bad = rewritten(onnx_path, tmp_path / "bad.onnx", tensors=None if tensors is None else tensors(stored(onnx_path)),
                    payload=payload)
    for engine in ("onnxruntime", "numpy"):
        with pytest.raises(ModelFileError, match=message):
            NameModel.load(bad, engine=engine)
    for command in (["verify", str(bad)], ["generate", "--model", str(bad), "-n", "3"]):
        out = CliRunner().invoke(run_main, command)
        assert out.exit_code == 1 and message.split(" ")[0] in out.output, out.output
        assert len(out.output.strip().splitlines()) == 1 and "Traceback" not in out.output


def test_export_refuses_a_layer_whose_sums_could_reach_2_24(tiny_run):
    """600 hidden units whose output weights all sit at the int8 peak: 255 * 127 * 600 > 2^24."""
    from dataclasses import replace

    from nametool.export.exact import NotExactable, exact_arrays, exact_form

    result, _ = tiny_run
    meta = result.checkpoint.meta
    vocab, dim, context = len(meta.vocab), meta.model.embed_dim, meta.model.context_size
    rng = np.random.default_rng(0)
    member = {"embed": rng.normal(size=(vocab, dim)),
              "linear": [(rng.normal(size=(600, context * dim)) * 0.1, np.zeros(600)),
                         (np.full((vocab, 600), 0.01), np.zeros(vocab))]}
    arrays, multipliers, _ = exact_arrays([member], context)
    wide = replace(meta, model=replace(meta.model, hidden=(600,)))
    with pytest.raises(NotExactable, match=r"a partial sum of output can reach 19,431,000, not below 2\^24; "
                                           "export with --form float"):
        exact_form(arrays, multipliers, wide)


def test_export_refuses_a_model_the_exact_form_would_change_in_one_line(tiny_run, tmp_path):
    """An output bias ten thousand nats large fits only a scale too coarse for the weights: the drift
    check refuses it, and nothing is written."""
    pytest.importorskip("torch")
    import copy

    import torch

    from nametool.export.onnx_export import export_onnx
    from nametool.runtime.errors import NametoolError

    result, _ = tiny_run
    ckpt = copy.deepcopy(result.checkpoint)
    with torch.no_grad():
        ckpt.model.mlp[-1].bias.add_(1e4)
    with pytest.raises(NametoolError, match="the exact form drifts too far from fp32: .*; nothing written"):
        export_onnx(ckpt, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_auto_runs_an_exact_file_on_numpy_and_a_float_file_on_onnxruntime():
    """The exact graph's table lookups run faster on numpy (docs/benchmarks.md); the names are the same."""
    exact, floating = NameModel.load("default"), NameModel.load("default-float")
    assert (exact.engine, floating.engine) == ("numpy", "onnxruntime")
    assert exact.generate(500, seed=5) == NameModel.load("default", engine="onnxruntime").generate(500, seed=5)


def test_masks_at_any_temperature_when_every_logit_is_negative():
    """Logits below zero (a softmax is shift-invariant): masked ids must not reach the exp table."""
    table = ex.make_exp_table()
    logits = np.array([[[-900, -1000, -950, -1300]]], dtype=np.int64)
    allowed = np.array([[False, True, True, True]])
    for t16 in (ex.temperature_fixed(0.5), ex.FIXED_ONE, ex.temperature_fixed(3.0)):
        mass = ex.mixture(logits, table, allowed=allowed, t16=t16)[0]
        assert mass[0] == 0 and mass[2] > mass[1] > mass[3] > 0


def test_export_keeps_a_bias_whose_weights_are_zero(tiny_run, tmp_path):
    """An output id with no weights and a bias, and a dead hidden unit with a large bias: both kept on
    a scale the bias fits (once a zero row's bias wrapped round int32 to 0)."""
    pytest.importorskip("torch")
    import copy

    import torch

    from nametool.export.onnx_export import export_onnx

    result, _ = tiny_run
    ckpt = copy.deepcopy(result.checkpoint)
    with torch.no_grad():
        ckpt.model.mlp[-1].weight[1] = 0.0
        ckpt.model.mlp[-1].bias[1] = 1.0
        ckpt.model.mlp[0].weight[3] = 0.0
        ckpt.model.mlp[0].bias[3] = 20.0
    export_onnx(ckpt, tmp_path / "m.onnx")
    model = NameModel.load(tmp_path / "m.onnx")
    z = model.integer_logits(np.zeros((1, model.context_size), np.int64))
    logit = z[0, 0, 1] * model.meta.exact.multipliers[0][1] * 2.0 ** -32  # nats
    assert logit == pytest.approx(1.0, abs=1e-4)


def twice_the_tables(proto):
    """A halved copy of the first-layer tables put before the real one: onnxruntime would run it."""
    from onnx import numpy_helper

    tensor = next(t for t in proto.graph.initializer if t.name == "exact.tables")
    proto.graph.initializer.insert(0, numpy_helper.from_array(numpy_helper.to_array(tensor) // 2, "exact.tables"))


def twice_the_metadata(proto):
    entry = next(p for p in proto.metadata_props if p.key == "nametool")
    proto.metadata_props.add(key="nametool", value=entry.value)


def cast_to_as_a_tensor(proto):
    from onnx import helper

    node = next(n for n in proto.graph.node if n.output[0] == "index1")
    del node.attribute[:]
    node.attribute.append(helper.make_attribute("to", helper.make_tensor("t", 7, [2], [7, 7])))


SMUGGLED = {"an initializer twice": (twice_the_tables, "initializer 'exact.tables' appears twice"),
            "the metadata entry twice": (twice_the_metadata, "metadata entry 'nametool' appears twice"),
            "an attribute as a tensor": (cast_to_as_a_tensor, "")}


@pytest.mark.parametrize("case", sorted(SMUGGLED))
def test_a_file_that_readers_would_read_differently_is_refused_in_one_line(tiny_run, tmp_path, case):
    """What onnxruntime and our own readers could take differently is refused, on every command."""
    from click.testing import CliRunner

    from nametool.runtime.cli import main as run_main

    edit, message = SMUGGLED[case]
    bad = rewritten(tiny_run[1], tmp_path / "bad.onnx", edit=edit)
    for engine in ("onnxruntime", "numpy"):
        for command in (["verify", str(bad)], ["generate", "--model", str(bad), "-n", "3"]):
            out = CliRunner().invoke(run_main, [*command, "--engine", engine])
            assert out.exit_code == 1 and message in out.output and "Traceback" not in out.output, out.output
            assert len(out.output.strip().splitlines()) == 1, out.output
