"""Where the folded first layer pays with onnxruntime: folded ÷ plain forward rate by embedding width.

    python bench/fold_width.py [--repeats 7]

One member with random weights (vocabulary 27, one hidden layer), for the lecture's context and
hidden size and a default member's; each graph built directly, the plain form run in calls of
``ROWS_PER_CALL["onnxruntime", "plain"]`` rows and the folded one in calls of its own, one
intra-op thread, medians of interleaved runs over 4,096 random contexts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_line  # noqa: E402
from nametool.runtime.model import ROWS_PER_CALL  # noqa: E402

VOCAB = 27
SHAPES = ((3, 200), (10, 384))  # (context, hidden): the lecture's, a default member's
WIDTHS = (8, 10, 12, 16, 20, 24, 32)


def sessions(context: int, width: int, hidden: int) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    """(plain, folded) sessions of one member with the same random weights."""
    rng = np.random.default_rng(0)
    embed = rng.standard_normal((VOCAB, width)).astype(np.float32)
    w1 = (rng.standard_normal((hidden, context * width)) * 0.1).astype(np.float32)
    weights = [numpy_helper.from_array(rng.standard_normal(hidden).astype(np.float32), "b1"),
               numpy_helper.from_array((rng.standard_normal((VOCAB, hidden)) * 0.1).astype(np.float32), "W2"),
               numpy_helper.from_array(np.zeros(VOCAB, np.float32), "b2")]
    tail = [helper.make_node("Tanh", ["a"], ["t"]), helper.make_node("Gemm", ["t", "W2", "b2"], ["l"], transB=1),
            helper.make_node("LogSoftmax", ["l"], ["logits"], axis=-1)]
    tables = np.einsum("vd,hcd->cvh", embed.astype(np.float64), w1.reshape(hidden, context, width).astype(np.float64))
    plain = ([helper.make_node("Gather", ["E", "context"], ["g"]), helper.make_node("Reshape", ["g", "shape"], ["r"]),
              helper.make_node("Gemm", ["r", "W1", "b1"], ["a"], transB=1)],
             [numpy_helper.from_array(embed, "E"), numpy_helper.from_array(w1, "W1"),
              numpy_helper.from_array(np.array([-1, context * width], np.int64), "shape")])
    folded = ([helper.make_node("Add", ["context", "offsets"], ["ids"]),
               helper.make_node("Gather", ["T", "ids"], ["g"]),
               helper.make_node("ReduceSum", ["g", "axis"], ["s"], keepdims=0),
               helper.make_node("Add", ["s", "b1"], ["a"])],
              [numpy_helper.from_array(tables.astype(np.float32).reshape(context * VOCAB, hidden), "T"),
               numpy_helper.from_array(np.arange(context, dtype=np.int64) * VOCAB, "offsets"),
               numpy_helper.from_array(np.array([1], np.int64), "axis")])
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    made = []
    for nodes, stored in (plain, folded):
        inputs = [helper.make_tensor_value_info("context", TensorProto.INT64, ["batch", context])]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", VOCAB])]
        graph = helper.make_graph(nodes + tail, "member", inputs, outputs, stored + weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString()
        made.append(ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]))
    return made[0], made[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = {"plain": ROWS_PER_CALL["onnxruntime", "plain"], "folded": ROWS_PER_CALL["onnxruntime", "folded"]}
    print(f"{cpu_line()}; onnxruntime {ort.__version__}; folded rows/s ÷ plain rows/s\n")
    print("| context, hidden | " + " | ".join(f"{w}-d" for w in WIDTHS) + " |\n|---|" + "---|" * len(WIDTHS))
    for context, hidden in SHAPES:
        ratios = []
        for width in WIDTHS:
            forms = dict(zip(("plain", "folded"), sessions(context, width, hidden)))
            contexts = np.random.default_rng(1).integers(0, VOCAB, (4096, context)).astype(np.int64)
            times = {name: [] for name in forms}
            for _ in range(args.repeats):
                for name, session in forms.items():
                    start = time.perf_counter()
                    for i in range(0, len(contexts), rows[name]):
                        session.run(None, {"context": contexts[i:i + rows[name]]})
                    times[name].append(time.perf_counter() - start)
            ratios.append(statistics.median(times["plain"]) / statistics.median(times["folded"]))
        print(f"| {context}, {hidden} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")


if __name__ == "__main__":
    main()
