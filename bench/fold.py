"""The folded first layer against the lecture's form, side by side, one thread.

    python bench/fold.py --checkpoint default.pt --checkpoint lecture.pt [--repeats 5]

Each checkpoint is exported twice (folded, and ``--no-fold``) and each file is run by
each engine. Rows of tables: names/s of ``generate`` at several batch sizes, the same
batch's forward-only rate, and a sweep of rows per model call (``NameModel.rows_per_call``)
on a 4,096-row forward. Medians of ``--repeats`` runs, the forms interleaved in each run.
onnxruntime runs on one intra-op thread; numpy's OpenBLAS is limited to one thread by
setting OPENBLAS_NUM_THREADS before numpy loads.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one thread, as onnxruntime gets here

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from nametool.export.onnx_export import export_onnx  # noqa: E402
from nametool.runtime.model import NameModel  # noqa: E402
from nametool.train.checkpoint import load_checkpoint  # noqa: E402

BATCHES = (1, 64, 1024, 4096)
ROWS = (64, 128, 256, 512, 1024, 4096)


def names_per_second(model: NameModel, batch: int) -> tuple[float, float]:
    """(names/s, forward-only names/s): generation against the model calls it makes, at this batch."""
    count = max(batch, 4096) if batch > 1 else 300
    start = time.perf_counter()
    names = model.generate(count, seed=0, batch_size=batch)
    seconds = time.perf_counter() - start
    chars = sum(len(n) + 1 for n in names)
    contexts = np.random.default_rng(0).integers(0, len(model.vocab), (batch, model.context_size))
    start = time.perf_counter()
    for _ in range(-(-chars // batch)):
        model.logits(contexts)
    return count / seconds, count / (time.perf_counter() - start)


def rows_rate(model: NameModel, rows: int) -> float:
    contexts = np.random.default_rng(1).integers(0, len(model.vocab), (4096, model.context_size))
    saved, model.rows_per_call = model.rows_per_call, rows
    try:
        start = time.perf_counter()
        for _ in range(5):
            model.logits(contexts)
        return 5 * 4096 / (time.perf_counter() - start)
    finally:
        model.rows_per_call = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.checkpoint:
            ckpt = load_checkpoint(Path(path))
            files = {}
            for form, fold in (("folded", True), ("plain", False)):
                files[form] = Path(tmp) / f"{Path(path).stem}-{form}.onnx"
                export_onnx(ckpt, files[form], form="float", fold=fold)
            print(f"\n### {Path(path).stem}: {ckpt.meta.model.describe()}\n")
            sizes = {form: f.stat().st_size / 1024 for form, f in files.items()}
            print(f"file KiB: folded {sizes['folded']:,.1f}, plain {sizes['plain']:,.1f}\n")
            for engine in ("onnxruntime", "numpy"):
                models = {form: NameModel.load(f, engine=engine, threads=1) for form, f in files.items()}
                runs = {(form, b): [] for form in models for b in BATCHES}
                rows = {(form, r): [] for form in models for r in ROWS}
                for _ in range(args.repeats):
                    for b in BATCHES:
                        for form, model in models.items():
                            runs[form, b].append(names_per_second(model, b))
                    for r in ROWS:
                        for form, model in models.items():
                            rows[form, r].append(rows_rate(model, r))
                print(f"{engine}:\n\n| batch | folded names/s | plain names/s | folded ÷ plain | "
                      "folded: generate time ÷ forward-only | plain: the same |")
                print("|---|---|---|---|---|---|")
                for b in BATCHES:
                    f = [statistics.median(x) for x in zip(*runs["folded", b])]
                    p = [statistics.median(x) for x in zip(*runs["plain", b])]
                    print(f"| {b:,} | {f[0]:,.0f} | {p[0]:,.0f} | {f[0] / p[0]:.2f} | {f[1] / f[0]:.2f} | "
                          f"{p[1] / p[0]:.2f} |")
                print(f"\n{engine}, forward rows/s of 4,096 rows by rows per call: "
                      + ", ".join(f"{r}: folded {statistics.median(rows['folded', r]):,.0f} / plain "
                                  f"{statistics.median(rows['plain', r]):,.0f}" for r in ROWS) + "\n")


if __name__ == "__main__":
    main()
