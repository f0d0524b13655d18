"""Names per second of an exact file against the float file of the same weights, one thread.

    python bench/exact_speed.py [--exact default] [--float default-float] [--rounds 5] [--names 20000]

Both files load in one process per engine; rounds interleave the two files and the batch
sizes (1,024 and 4,096), each round timing ``--names`` names after a warm-up (the numpy engine
with glibc's thresholds set as ``nametool-run generate`` sets them for thousands of names). Prints the
median names/s of each and the ratio exact / float, with the CPU. Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_line  # noqa: E402
from nametool.runtime.memory import keep_freed_memory  # noqa: E402
from nametool.runtime.model import NameModel  # noqa: E402

BATCHES = (1024, 4096)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exact", default="default")
    parser.add_argument("--float", dest="float_", default="default-float")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--names", type=int, default=20000)
    parser.add_argument("--engines", default="onnxruntime,numpy")
    args = parser.parse_args()
    print(f"CPU: {cpu_line()}; {args.names:,} names a round, {args.rounds} rounds, one thread; medians")
    print("| engine | batch | exact names/s | float names/s | exact / float |\n|---|---|---|---|---|")
    for engine in args.engines.split(","):
        if engine == "numpy":  # as nametool-run generate does for thousands of names on numpy
            keep_freed_memory()
        models = {form: NameModel.load(spec, engine=engine, threads=1)
                  for form, spec in (("exact", args.exact), ("float", args.float_))}
        assert models["exact"].form == "exact" and models["float"].form == "float"
        speeds = {(form, batch): [] for form in models for batch in BATCHES}
        for model in models.values():
            model.generate(2000, seed=0, batch_size=1024)
        for r in range(args.rounds):
            for batch in BATCHES:
                for form, model in (models.items() if r % 2 == 0 else reversed(models.items())):
                    start = time.perf_counter()
                    model.generate(args.names, seed=r + 1, batch_size=batch)
                    speeds[form, batch].append(args.names / (time.perf_counter() - start))
        for batch in BATCHES:
            e, f = (statistics.median(speeds[form, batch]) for form in ("exact", "float"))
            print(f"| {engine} | {batch:,} | {e:,.0f} | {f:,.0f} | {e / f:.2f} |")


if __name__ == "__main__":
    main()
