"""Reading a 1-million-line names file: time and peak memory, streamed against read-whole.

    python bench/bench_data.py            # about 30 seconds on 2 cores
    python bench/bench_data.py --runs 3   # fewer repeats

Each measurement runs in a fresh child process; the peak RSS is reset just before
the load (``/proc/self/clear_refs``), so imports do not count. The Python
allocation peak comes from one extra run under ``tracemalloc``. "streamed" is ``load_names`` (blocks of whole lines, memory bounded by the
distinct names kept); "read whole" is the former way (read every byte, decode,
``splitlines``, clean), kept here as the baseline. Two files of 1,000,000 lines:
mostly distinct names, and 50 names repeated. Prints a markdown table of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LINES = 1_000_000
SYLLABLES = "ka ra mi an ne sh vi ja ya la ti po de su ru ha ma ni ko re sa ta va pa ga da na li mo bi ch ve".split()

CHILD = """
import json, sys, time, tracemalloc
from pathlib import Path
from nametool.train.data import clean_names, load_names

def read_whole(path):  # the former load_names: the file, its text and its lines all in memory at once
    raw = Path(path).read_bytes()
    names, dropped = clean_names(raw.decode("utf-8-sig").splitlines())
    return names

def status(field):  # kB, from the kernel's own accounting
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1])

how, path, traced = sys.argv[1], sys.argv[2], sys.argv[3] == "traced"
Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to now: imports do not count
before = status("VmRSS")
if traced:
    tracemalloc.start()
start = time.perf_counter()
count = len(load_names(path).names) if how == "streamed" else len(read_whole(path))
seconds = time.perf_counter() - start
python_peak = tracemalloc.get_traced_memory()[1] if traced else None
print(json.dumps({"seconds": seconds, "added_mb": (status("VmHWM") - before) / 1024, "names": count,
                  "python_peak_mb": python_peak and python_peak / 2**20}))
"""


def write_files(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    syllables = np.array(SYLLABLES)
    distinct = ["".join(row) for row in syllables[rng.integers(len(syllables), size=(LINES, 4))]]
    repeated = [distinct[i % 50] for i in range(LINES)]
    files = {"1M lines, mostly distinct": distinct, "1M lines, 50 names repeated": repeated}
    paths = {}
    for i, (label, names) in enumerate(files.items()):
        paths[label] = folder / f"names{i}.txt"
        paths[label].write_text("\n".join(names) + "\n", encoding="utf-8")
    return paths


def measure(how: str, path: Path, traced: bool = False) -> dict:
    args = [sys.executable, "-c", CHILD, how, str(path), "traced" if traced else "plain"]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per cell; the table shows medians")
    runs = parser.parse_args().runs
    print(machine())
    print()
    print("| file | size | loader | names kept | seconds | peak RSS added by the load | peak Python allocations |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in write_files(Path(tmp)).items():
            for how in ("streamed", "read whole"):
                results = [measure(how, path) for _ in range(runs)]
                seconds = statistics.median(r["seconds"] for r in results)
                added = statistics.median(r["added_mb"] for r in results)
                traced = measure(how, path, traced=True)["python_peak_mb"]  # tracemalloc slows the load
                print(f"| {label} | {path.stat().st_size / 1e6:.1f} MB | {how} | {results[0]['names']:,} "
                      f"| {seconds:.2f} | {added:.0f} MB | {traced:.1f} MB |")


if __name__ == "__main__":
    main()
