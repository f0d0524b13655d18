"""Cold start, interleaved: a bare `import onnxruntime, numpy`, `import numpy, click`,
`nametool-run generate -n 10` and `nametool-run --help`, every round running all four (the
machine's load then weighs on each alike); medians.

    python bench/cold_interleaved.py [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

PYTHON = os.path.realpath(sys.executable)
SCRIPTS = os.path.dirname(PYTHON)  # the console scripts themselves, not a pyenv shim in front
COMMANDS = {
    "import onnxruntime, numpy": [PYTHON, "-c", "import onnxruntime, numpy"],
    "import numpy, click": [PYTHON, "-c", "import numpy, click"],
    "nametool-run generate -n 10": [f"{SCRIPTS}/nametool-run", "generate", "-n", "10"],
    "nametool-run --help": [f"{SCRIPTS}/nametool-run", "--help"],
}


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    times = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, command in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["import onnxruntime, numpy"])
    for name, values in times.items():
        print(f"{name:30s} median {statistics.median(values) * 1e3:6.1f} ms  x bare import {statistics.median(values) / base:.2f}")


if __name__ == "__main__":
    main()
