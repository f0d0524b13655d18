"""Which int8 scheme keeps "the same names on every device"? Size, drift, batch dependence, speed.

    python bench/int8_schemes.py [--model models/default.onnx] [--emulate]

Each scheme is applied to the fp32 model file. Drift is measured on every
validation window of the split the file carries. "Batch dependence" is the largest
|dp| between a context run alone and the same context inside a batch of 1,024.
With ``--emulate``, each scheme also runs under ``qemu-x86_64 -cpu Haswell`` (AVX2,
no AVX-512, no VNNI, no AMX: onnxruntime picks its AVX2 integer kernels there), and
"AVX2 vs here" is the largest |dp| over 64 contexts between that run and this CPU.
Speed is forward rows/s at batch 1,024 on one onnxruntime thread, median of 7.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from nametool.export.quantize import quantize_int8
from nametool.runtime.model import OnnxruntimeBackend, _read_meta
from nametool.runtime.sampling import log_softmax, next_char_probs
from nametool.runtime.windows import build_windows
from nametool.train.evaluate import splits_from_meta

ROOT = Path(__file__).resolve().parents[1]
EMULATED_CPU = "Haswell"  # AVX2 + FMA, no AVX-512, VNNI or AMX


def dynamic(proto, **how):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "a.onnx", Path(tmp) / "b.onnx"
        onnx.save_model(proto, src)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, **how)
        return onnx.load_model(dst)


def dequantize_linear(proto):
    """The chosen scheme, but with DequantizeLinear in place of Cast + Mul."""
    from onnx import helper

    model = quantize_int8(proto)
    nodes, skip = [], set()
    for node in model.graph.node:
        if node.op_type == "Cast" and node.input[0].endswith("_int8"):
            skip.add(node.output[0])
            continue
        if node.op_type == "Mul" and node.input[0] in skip:
            weight = node.input[1][: -len("_scale")]
            scale = next(t for t in model.graph.initializer if t.name == node.input[1])
            axis = 0 if len(scale.dims) == 2 else 1
            scale.dims[:] = [scale.dims[0]]
            node = helper.make_node("DequantizeLinear", [f"{weight}_int8", node.input[1]], [weight], axis=axis)
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


SCHEMES = {
    "fp32 (reference)": (lambda p: p, {}),
    "dynamic u8s8, per tensor (the old default)": (dynamic, {}),
    "dynamic u8s8 + session.x64quantprecision": (dynamic, {"session.x64quantprecision": "1"}),
    "dynamic u8s8, reduce_range": (lambda p: dynamic(p, reduce_range=True), {}),
    "dynamic u8s8, per channel": (lambda p: dynamic(p, per_channel=True), {}),
    "int8 weights as DequantizeLinear": (dequantize_linear, {}),
    "int8 weights as Cast + Mul (chosen)": (quantize_int8, {}),
}


def session(data: bytes, config: dict):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def probs_of(sess, contexts: np.ndarray) -> np.ndarray:
    return next_char_probs(OnnxruntimeBackend(sess).run(np.ascontiguousarray(contexts)))


def emulated_probs(path: Path, config: dict, contexts: np.ndarray) -> np.ndarray:
    """The same contexts through onnxruntime on an emulated AVX2-only CPU."""
    code = (
        "import json, sys, numpy as np\n"
        "sys.path.insert(0, %r)\n"
        "from int8_schemes import session, probs_of\n"
        "ctx = np.array(json.loads(sys.argv[1]), dtype=np.int64)\n"
        "p = probs_of(session(open(sys.argv[2], 'rb').read(), json.loads(sys.argv[3])), ctx)\n"
        "print(json.dumps(p.tolist()))\n" % str(Path(__file__).parent)
    )
    python = os.path.realpath(sys.executable)
    out = subprocess.run(["qemu-x86_64-static", "-cpu", EMULATED_CPU, python, "-c", code,
                          json.dumps(contexts.tolist()), str(path), json.dumps(config)],
                         capture_output=True, text=True, check=True)
    return np.array(json.loads(out.stdout))


def measure(name, proto, config, contexts, targets, fp32_probs, emulate: bool, tmp: Path) -> dict:
    data = proto.SerializeToString()
    path = tmp / "m.onnx"
    path.write_bytes(data)
    sess = session(data, config)
    logp = log_softmax(OnnxruntimeBackend(sess).run(contexts))
    logp32 = np.log(fp32_probs)
    kl = float((fp32_probs * (logp32 - logp)).sum(axis=1).mean())
    val_loss = float(-logp[np.arange(len(targets)), targets].mean())
    probe = np.unique(contexts, axis=0)[:: max(1, len(np.unique(contexts, axis=0)) // 1024)][:1024]
    together = probs_of(sess, probe)
    alone = np.vstack([probs_of(sess, probe[i:i + 1]) for i in range(64)])
    row = {"scheme": name, "bytes": len(data), "mean_kl": kl, "val_loss": val_loss,
           "batch_dependence": float(np.abs(alone - together[:64]).max())}
    batch = probe[:1024]
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(20):
            sess.run(None, {"context": batch})
        times.append(time.perf_counter() - start)
    row["rows_per_s"] = 20 * len(batch) / statistics.median(times)
    if emulate:
        here = probs_of(sess, probe[:64])
        row["avx2_vs_here"] = float(np.abs(emulated_probs(path, config, probe[:64]) - here).max())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "default.onnx"))
    parser.add_argument("--emulate", action="store_true", help="also run each scheme under qemu, AVX2 only")
    args = parser.parse_args()
    if args.emulate and not shutil.which("qemu-x86_64-static"):
        sys.exit("--emulate needs qemu-user-static (apt-get install qemu-user-static)")
    proto = onnx.load_model(args.model)
    meta = _read_meta({p.key: p.value for p in proto.metadata_props}, Path(args.model))
    contexts, targets = build_windows(splits_from_meta(meta)["val"], meta.vocab, meta.model.context_size)
    contexts, targets = np.asarray(contexts, dtype=np.int64), np.asarray(targets)
    fp32_probs = probs_of(session(proto.SerializeToString(), {}), contexts)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (make, config) in SCHEMES.items():
            rows.append(measure(name, make(proto), config, contexts, targets, fp32_probs, args.emulate, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    print(f"{len(targets):,} validation windows of {args.model}\n")
    print("| scheme | file KiB | mean KL (nats) | val loss | batch dependence | AVX2 vs here | rows/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        avx2 = f"{r['avx2_vs_here']:.1e}" if "avx2_vs_here" in r else "not run"
        print(f"| {r['scheme']} | {r['bytes'] / 1024:,.0f} | {r['mean_kl']:.5f} | {r['val_loss']:.4f} | "
              f"{r['batch_dependence']:.1e} | {avx2} | {r['rows_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
