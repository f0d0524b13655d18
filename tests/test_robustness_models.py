"""Robustness: model files that are missing, broken, foreign, hostile or numerically unusable.

Every bad file is refused with our ModelFileError (one line through the CLI), never a
crash; a model whose weights rule out the end still stops at the length cap; a fuzz
run feeds hundreds of mutated copies of a real file through the loader in a subprocess.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from nametool.runtime import ModelFileError, NameModel, RequestError
from nametool.runtime.cli import main as run_main
from nametool.runtime.generation import Request, generate
from nametool.runtime.verify import verify
from nametool.runtime.sampling import UnusableLogits, draw, next_char_probs
from nametool.runtime.onnxfile import weight_digests
from nametool.runtime.schema import METADATA_KEY, metadata_digests

from .conftest import make_meta

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402

FUZZ_MUTANTS = 600
FUZZ_SEED = 20261128
FUZZ_TIMEOUT = 180  # seconds for all mutants; a hang in any one fails the test


def one_line_error(result) -> str:
    """The CLI's whole output for a refused file: exit 1 and a single 'Error: ...' line."""
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and result.output.count("\n") == 1, result.output
    assert "Traceback" not in result.output
    return result.output


def rewrite(src, dst, *, payload=None, weights=None, raw=True, reseal=False):
    """A copy of an exported file with its metadata JSON and/or some weights changed.

    ``weights(name, array)`` returns a new array for that initializer, or None to keep it.
    ``raw=False`` stores changed tensors as float_data instead of raw_data. ``reseal`` records
    new digests, as export would, so that verify's later checks are reached.
    """
    proto = onnx.load(str(src))
    if payload is not None:
        entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
        data = json.loads(entry.value)
        payload(data)
        entry.value = json.dumps(data, ensure_ascii=False)
    for tensor in proto.graph.initializer if weights is not None else ():
        new = weights(tensor.name, numpy_helper.to_array(tensor).copy())
        if new is not None:
            replacement = (numpy_helper.from_array(new, tensor.name) if raw else
                           helper.make_tensor(tensor.name, onnx.TensorProto.FLOAT, new.shape, new.ravel().tolist()))
            tensor.CopyFrom(replacement)
    if reseal:
        entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
        data = json.loads(entry.value)
        tensors, graph = weight_digests(proto.SerializeToString())
        data["integrity"] = {"tensors": tensors, "graph": graph, "metadata": metadata_digests(entry.value)}
        entry.value = json.dumps(data, ensure_ascii=False)
    onnx.save(proto, str(dst))
    return dst


def set_value(target: str, index, value: float):
    def edit(name, array):
        if name != target:
            return None
        array[index] = value
        return array
    return edit


# -- files that are not a model, or not ours ------------------------------------------------------

def broken_files(onnx_path, tmp_path):
    data = onnx_path.read_bytes()
    rng = np.random.default_rng(7)
    cases = {"missing": None, "a folder": "folder", "empty": b"", "text": b"name,count\nasha,3\n",
             "png header": b"\x89PNG\r\n\x1a\n" + bytes(64)}
    for n in (1, 16, 200, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1):
        cases[f"truncated at {n} bytes"] = data[:n]
    for size in (10, 1000, len(data)):
        cases[f"{size} random bytes"] = rng.bytes(size)
    paths = {}
    for label, content in cases.items():
        path = tmp_path / f"{label.replace(' ', '_')}.onnx"
        if content == "folder":
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        paths[label] = path
    return paths


def test_files_that_are_not_models_are_refused_in_one_line(tiny_run, tmp_path):
    _, onnx_path = tiny_run
    runner = CliRunner()
    for label, path in broken_files(onnx_path, tmp_path).items():
        with pytest.raises(ModelFileError, match=str(path.name)):
            NameModel.load(path)
        for command in (["generate", "--model", str(path)], ["info", str(path)], ["verify", str(path)]):
            assert str(path.name) in one_line_error(runner.invoke(run_main, command)), (label, command)


def foreign_model(path, metadata: dict | None = None):
    """A valid ONNX file from elsewhere: float in, float out, someone else's metadata (or none)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "someone_elses",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("metadata", [None, {"author": "someone"}, {"nametool_v0": "{}"}])
def test_a_valid_onnx_file_from_elsewhere_is_refused(tmp_path, metadata):
    path = foreign_model(tmp_path / "foreign.onnx", metadata)
    with pytest.raises(ModelFileError, match="without nametool metadata"):
        NameModel.load(path)
    assert "without nametool metadata" in one_line_error(CliRunner().invoke(run_main, ["info", str(path)]))


def test_our_metadata_on_someone_elses_graph_is_refused(tiny_run, tmp_path):
    _, onnx_path = tiny_run
    meta_json = NameModel.load(onnx_path).meta.to_json()
    path = foreign_model(tmp_path / "foreign.onnx", {METADATA_KEY: meta_json})
    with pytest.raises(ModelFileError, match=r"graph has inputs \['x'\]"):
        NameModel.load(path)


# -- our metadata with a broken or missing field --------------------------------------------------

BROKEN_METADATA = [
    (lambda d: d.clear(), "schema version None"),
    (lambda d: d.update(schema_version=2), "schema version 2 is not one this nametool reads"),
    (lambda d: d.update(schema_version="1"), "schema version '1'"),
    (lambda d: d.update(schema_version=True), "schema version True"),
    (lambda d: d.pop("vocab"), "missing the 'vocab' section"),
    (lambda d: d.pop("model"), "missing the 'model' section"),
    (lambda d: d.pop("sampling"), "missing the 'sampling' section"),
    (lambda d: d.update(provenance=[]), "missing the 'provenance' section"),
    (lambda d: d["vocab"].pop("chars"), "'vocab' is missing chars"),
    (lambda d: d["vocab"].update(chars=[]), "vocab: no characters"),
    (lambda d: d["vocab"].update(chars=["a", 1]), "vocab.chars must be a list of strings"),
    (lambda d: d["vocab"].update(chars=["ab"]), "every character and the end token must be one character"),
    (lambda d: d["vocab"].update(end_token=""), "every character and the end token must be one character"),
    (lambda d: d["model"].update(context_size="3"), "model.context_size must be an integer"),
    (lambda d: d["model"].update(context_size=2.5), "model.context_size must be an integer"),
    (lambda d: d["model"].update(context_size=100000), "context_size 100000 is above the limit 256"),
    (lambda d: d["model"].update(embed_dim=-4), "model.embed_dim -4 must be a positive integer"),
    (lambda d: d["model"].update(hidden=[10**9]), "parameters or more, above the limit"),
    (lambda d: d["model"].update(hidden=[1] * 40), "40 layers, above the limit 16"),
    (lambda d: d["model"].update(norm="batch"), "model.norm 'batch' is not one of"),
    (lambda d: d["sampling"].update(max_len=10**9), "sampling.max_len 1000000000 is above the limit 256"),
    (lambda d: d["sampling"].update(min_len=0), "need 1 <= min_len <= max_len"),
    (lambda d: d["sampling"].update(temperature=None), "sampling.temperature must be a number"),
    (lambda d: d["provenance"].update(seed=-1), "provenance.seed -1 is outside"),
    (lambda d: d["provenance"].update(train_loss="low"), "provenance.train_loss must be a number or null"),
    (lambda d: d["provenance"].pop("dataset"), "'provenance' is missing dataset"),
    (lambda d: d["golden"].update(tolerance=1.0), "golden.tolerance 1.0 is outside"),
    (lambda d: d["golden"].update(probs="none"), "golden.probs must be a list"),
    (lambda d: d["golden"].update(probs=[["x"]]), "golden.probs must be a list of lists of numbers"),
    (lambda d: d["known_names"].update(count="many"), "known_names.count must be an integer"),
    (lambda d: d["vocab"]["chars"].__setitem__(-1, "\n"), "vocabulary holds unprintable characters '\\n'"),
    (lambda d: d["vocab"]["chars"].__setitem__(-1, "\u2028"), "vocabulary holds unprintable"),
    (lambda d: d["vocab"].update(chars=d["vocab"]["chars"][:-1]), "disagrees with the vocabulary size"),
    (lambda d: d["vocab"].update(chars=d["vocab"]["chars"] + ["ü"]), "disagrees with the vocabulary size"),
    (lambda d: d["model"].update(context_size=4), "disagrees with context_size 4"),
]


@pytest.mark.parametrize("payload, message", BROKEN_METADATA)
def test_broken_metadata_fields_are_refused_in_one_line(tiny_float, tmp_path, payload, message):
    _, onnx_path = tiny_float
    bad = rewrite(onnx_path, tmp_path / "bad.onnx", payload=payload)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        NameModel.load(bad)
    assert message in one_line_error(CliRunner().invoke(run_main, ["info", str(bad)]))


def test_invalid_json_metadata_is_refused(tiny_run, tmp_path):
    _, onnx_path = tiny_run
    proto = onnx.load(str(onnx_path))
    next(p for p in proto.metadata_props if p.key == METADATA_KEY).value = '{"schema_version": 1, "vocab"'
    onnx.save(proto, str(tmp_path / "bad.onnx"))
    with pytest.raises(ModelFileError, match="metadata is not valid JSON"):
        NameModel.load(tmp_path / "bad.onnx")


@pytest.mark.parametrize("payload, message", [
    (lambda d: d["golden"].update(probs=d["golden"]["probs"][:-1]), "golden table has 32 rows"),
    (lambda d: d["golden"]["probs"][0].append(0.5), "rows of widths"),
    (lambda d: d["golden"].update(contexts=["\u00e9"] * len(d["golden"]["contexts"])), "not in the vocabulary"),
    (lambda d: d.update(golden=None), "carries no golden distributions"),
])
def test_a_broken_self_test_fails_verify_and_does_not_crash(tiny_run, tmp_path, payload, message):
    _, onnx_path = tiny_run
    bad = rewrite(onnx_path, tmp_path / "bad.onnx", payload=payload, reseal=True)
    report = verify(NameModel.load(bad))
    assert not report.ok and message in report.message
    result = CliRunner().invoke(run_main, ["verify", str(bad)])
    assert "verify failed" in one_line_error(result)


def test_corrupt_training_names_are_refused_when_novel_needs_them(tiny_run, tmp_path):
    _, onnx_path = tiny_run
    bad = rewrite(onnx_path, tmp_path / "bad.onnx", payload=lambda d: d["known_names"].update(data="AAAA"))
    assert len(NameModel.load(bad).generate(3, seed=0)) == 3  # only --novel reads them
    result = CliRunner().invoke(run_main, ["generate", "--model", str(bad), "--novel"])
    assert "known_names is corrupt" in one_line_error(result)


# -- weights: NaN, inf, overflow, and an end that can never be drawn ------------------------------

def output_layer(onnx_path) -> str:
    """Name of the last Linear's bias (the initializer with one value per vocabulary id)."""
    vocab = len(NameModel.load(onnx_path).vocab)
    return next(t.name for t in onnx.load(str(onnx_path)).graph.initializer
                if list(t.dims) == [vocab] and t.name.endswith("bias"))


@pytest.mark.parametrize("raw", [True, False], ids=["raw_data", "float_data"])
@pytest.mark.parametrize("tensor, index, value, message", [
    ("embed.weight", (5, 0), np.nan, "'embed.weight' holds NaN"),
    ("mlp.0.weight", (0, 0), np.inf, "'mlp.0.weight' holds inf"),  # tanh would hide it from the logits
    ("mlp.3.bias", (1,), -np.inf, "'mlp.3.bias' holds inf"),
    ("OUTPUT", (0,), np.nan, "holds NaN"),
    ("OUTPUT", (0,), -np.inf, "holds inf"),  # an impossible end, written as -inf: still refused
])
def test_nan_or_inf_weights_are_refused(tiny_float, tmp_path, raw, tensor, index, value, message):
    _, onnx_path = tiny_float
    name = output_layer(onnx_path) if tensor == "OUTPUT" else tensor
    bad = rewrite(onnx_path, tmp_path / "bad.onnx", weights=set_value(name, index, value), raw=raw)
    with pytest.raises(ModelFileError, match=f"{message}; refusing to sample from it"):
        NameModel.load(bad)
    assert message in one_line_error(CliRunner().invoke(run_main, ["generate", "--model", str(bad)]))


def test_finite_weights_that_overflow_to_infinite_logits_are_refused(tiny_float, tmp_path):
    _, onnx_path = tiny_float
    name = output_layer(onnx_path).replace("bias", "weight")
    bad = rewrite(onnx_path, tmp_path / "bad.onnx", weights=lambda n, a: np.full_like(a, 3e38) if n == name else None)
    with pytest.raises(ModelFileError, match="gives NaN or infinite logits; refusing"):
        NameModel.load(bad)


def test_weights_that_make_the_end_impossible_still_stop_at_the_length_cap(tiny_float, tmp_path):
    _, onnx_path = tiny_float
    # finite, but exp(-1e4) is 0: the end token is never drawn, only forced at max-len
    bad = rewrite(onnx_path, tmp_path / "no_end.onnx", weights=set_value(output_layer(onnx_path), (0,), -1e4))
    model = NameModel.load(bad)
    assert model.next_char_distribution("ab")["."] == 0.0
    cap = model.meta.sampling.max_len
    assert {len(name) for name in model.generate(50, seed=1)} == {cap}
    assert {len(name) for name in model.generate(50, seed=1, max_len=12, prefix="a")} == {12}
    result = CliRunner().invoke(run_main, ["generate", "--model", str(bad), "-n", "20", "--max-len", "7"])
    assert result.exit_code == 0 and {len(line) for line in result.output.splitlines()} == {7}


# -- the sampler on rows with no distribution -----------------------------------------------------

BAD_ROWS = {
    "all -inf once the end is masked": np.array([[0.0, -np.inf, -np.inf, -np.inf]]),
    "NaN": np.array([[0.0, np.nan, 1.0, 2.0]]),
    "+inf": np.array([[0.0, np.inf, 1.0, 2.0]]),
}


@pytest.mark.parametrize("row", BAD_ROWS.values(), ids=BAD_ROWS.keys())
@pytest.mark.parametrize("options", [{}, {"temperature": 0}, {"top_k": 2}, {"top_p": 0.5}, {"temperature": 1e-40}],
                         ids=["plain", "greedy", "top-k", "top-p", "tiny temperature"])
def test_the_sampler_refuses_rows_without_a_distribution(row, options):
    logits = np.vstack([np.zeros((3, 4)), row]).astype(np.float32)  # three good rows, then the bad one
    with pytest.raises(UnusableLogits) as caught:
        draw(logits, np.full(4, 0.5), forbid=0, **options)
    assert caught.value.row == 3
    with pytest.raises(UnusableLogits):
        next_char_probs(np.where(np.arange(4) == 0, -np.inf, logits), **options)


def test_a_model_allowing_only_the_end_before_min_len_is_a_request_error():
    meta = make_meta(chars="abc", min_len=3, max_len=6)

    def only_the_end(contexts):  # (batch, context_size) -> (batch, vocab)
        logits = np.full((len(contexts), 4), -np.inf, dtype=np.float32)
        logits[:, 0] = 0.0
        return logits

    with pytest.raises(RequestError, match="after '' the model gives every character but the end probability 0"):
        generate(only_the_end, meta, Request(count=5), np.random.default_rng(0))


def test_nan_logits_in_some_context_name_that_context():
    meta = make_meta(chars="abc", min_len=1, max_len=6)

    def nan_after_b(contexts):
        logits = np.zeros((len(contexts), 4), dtype=np.float32)
        logits[contexts[:, -1] == 2] = np.nan  # id 2 is 'b'
        return logits

    with pytest.raises(ModelFileError, match=r"no usable distribution after '[abc]*b' \(logits row \d+: its logits "
                                             r"hold nan\); the model file is damaged"):
        generate(nan_after_b, meta, Request(count=200), np.random.default_rng(0))


def test_an_end_that_is_never_likely_still_ends_at_max_len():
    meta = make_meta(chars="abc", min_len=1, max_len=5)

    def never_end(contexts):
        logits = np.zeros((len(contexts), 4), dtype=np.float32)
        logits[:, 0] = -np.inf
        return logits

    names = generate(never_end, meta, Request(count=100), np.random.default_rng(0))
    assert len(names) == 100 and {len(n) for n in names} == {5}


# -- fuzz: mutated copies of a real model through the loader, in a subprocess ---------------------

FUZZ_CHILD = r"""
import json, sys, tempfile, traceback
from pathlib import Path
import numpy as np
from nametool.runtime import ModelFileError, NameModel
from nametool.runtime.cli import format_summary
from nametool.runtime.summary import summary
from nametool.runtime.verify import verify

source, seed, count, head = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = source.read_bytes()
rng = np.random.default_rng(seed)

def mutate(data):
    out, n = bytearray(data), len(data)
    kind = ("flip bytes", "truncate", "duplicate a chunk", "zero a range", "flip bits", "insert random bytes",
            "flip graph bytes")[int(rng.integers(7))]
    if kind == "flip bytes":
        for i in rng.integers(n, size=int(rng.integers(1, 17))):
            out[i] = int(rng.integers(256))
    elif kind == "truncate":
        out = out[:int(rng.integers(n))]
    elif kind == "duplicate a chunk":
        a = int(rng.integers(n))
        out[int(rng.integers(n)):0] = out[a:a + int(rng.integers(1, 4096))]
    elif kind == "zero a range":
        a = int(rng.integers(n))
        b = min(n, a + int(rng.integers(1, 512)))
        out[a:b] = bytes(b - a)
    elif kind == "flip bits":
        for i in rng.integers(n, size=int(rng.integers(1, 9))):
            out[i] ^= 1 << int(rng.integers(8))
    elif kind == "insert random bytes":
        a = int(rng.integers(n))
        out[a:a] = rng.bytes(int(rng.integers(1, 64)))
    else:  # the nodes and signature, before the first weight: where a parser is most exposed
        for i in rng.integers(head, size=int(rng.integers(1, 5))):
            out[i] = int(rng.integers(256))
    return bytes(out), kind

with tempfile.TemporaryDirectory() as tmp:
    for i in range(count):
        mutant, kind = mutate(data)
        if mutant == data:
            continue
        path = Path(tmp) / f"mutant{i}.onnx"
        path.write_bytes(mutant)
        print(json.dumps({"i": i, "kind": kind}), flush=True)  # the last line names a mutant that hangs or crashes
        try:
            model = NameModel.load(path)
            format_summary(summary(model))  # what `nametool-run info` prints
            report = verify(model)
            outcome = "loads and verifies" if report.ok else "refused by verify"
            if report.ok:
                model.generate(5, seed=i)
        except ModelFileError as exc:
            outcome = "refused on load" if "\n" not in str(exc) else "multi-line error: " + str(exc)
        except Exception:
            outcome = "escaped: " + traceback.format_exc()
        print(json.dumps({"i": i, "kind": kind, "outcome": outcome}), flush=True)
"""


def test_fuzzed_model_files_are_refused_or_verified_never_crash(tiny_run):
    _, onnx_path = tiny_run
    data = onnx_path.read_bytes()
    head = data.find(onnx.load(str(onnx_path)).graph.initializer[0].raw_data)  # where the weights start
    assert head > 0
    args = [sys.executable, "-c", FUZZ_CHILD, str(onnx_path), str(FUZZ_SEED), str(FUZZ_MUTANTS), str(head)]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=FUZZ_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        last = (exc.stdout or b"").decode().strip().splitlines()[-1:]
        pytest.fail(f"fuzz run hung (seed {FUZZ_SEED}); last mutant started: {last}")
    stray = [line for line in proc.stdout.splitlines() if not line.startswith("{")]
    assert not stray, f"something printed to stdout (seed {FUZZ_SEED}): {stray[:4]}"
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    done = [r for r in rows if "outcome" in r]
    assert proc.returncode == 0, f"interpreter died ({proc.returncode}) at {rows[-1:]} (seed {FUZZ_SEED}): " \
                                 f"{proc.stderr[-2000:]}"
    assert len(done) > FUZZ_MUTANTS * 0.95  # a few mutations leave the bytes as they were
    escaped = [r for r in done if r["outcome"].startswith(("escaped", "multi-line"))]
    assert not escaped, f"seed {FUZZ_SEED}: {escaped[:3]}"
    outcomes = {r["outcome"] for r in done}
    # the mutations both break files and leave them loadable, and verify catches every change
    assert {"refused on load", "refused by verify"} <= outcomes and "loads and verifies" not in outcomes
    assert proc.stderr == ""  # onnxruntime printed nothing of its own


def test_raw_data_short_of_a_whole_value_is_one_line_on_every_command(tmp_path):
    """A tensor's raw bytes cut a few bytes short: refused by name, never a numpy traceback."""
    from nametool.runtime.model import bundled_model_path

    for model in ("lecture", "default-float"):
        proto = onnx.load(str(bundled_model_path(f"{model}.onnx")))
        tensor = max(proto.graph.initializer, key=lambda t: len(t.raw_data))
        tensor.raw_data = tensor.raw_data[:-3]
        bad = tmp_path / f"{model}.onnx"
        onnx.save(proto, str(bad))
        for args in (["generate", "--model", str(bad), "--engine", "numpy"], ["info", str(bad), "--engine", "numpy"],
                     ["verify", str(bad), "--engine", "numpy"]):
            out = CliRunner().invoke(run_main, args)
            assert out.exit_code == 1 and "not a whole number of" in out.output and "Traceback" not in out.output
            assert len(out.output.strip().splitlines()) == 1, out.output


READ_REPEATED = """
import sys
import numpy as np
from nametool.runtime.onnxfile import tensor_array
message = sys.stdin.buffer.read()
name, values = tensor_array(memoryview(message))
print(name, values.shape[0], float(values.astype(np.float64).sum()))
"""


def test_a_tensor_in_many_repeated_fields_is_read_in_one_pass():
    """200,000 float_data fields of one value each (protobuf allows it) are read in about a second; when
    each field copied the list so far (quadratic), it took minutes: the child's 60 s limit fails that."""
    count = 200_000
    values = np.arange(count, dtype="<f4")
    fields = b"".join(b"\x25" + v.tobytes() for v in values)  # field 4 (float_data), 32-bit, unpacked
    name = b"w"
    message = b"\x08" + _varint(count) + b"\x10\x01" + b"\x42" + _varint(len(name)) + name + fields
    out = subprocess.run([sys.executable, "-c", READ_REPEATED], input=message, capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split() == ["w", str(count), str(float(values.astype(np.float64).sum()))]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
