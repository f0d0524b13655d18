"""Wall time of whole `nametool train` runs, configurations interleaved, in fresh processes.

    python bench/train_time.py [--rounds 3] [--isa avx2] [--only NAME,...] [--against REV]

Each round runs every configuration once (the machine's load then weighs on each alike);
the table gives the median training time ("trained in ...") and the test loss.

``--isa avx2`` runs the children with the vector instructions of an AVX2-only CPU on an
AVX-512/AMX machine: ``ATEN_CPU_CAPABILITY=avx2`` (PyTorch's own kernels),
``MKL_ENABLE_INSTRUCTIONS=AVX2`` (MKL's sgemm and tanh, which fp32 training uses) and
``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN: no AMX, no AVX-512 bf16). It is a proxy for the 2-core
AMD EPYC of issue #16: the same instruction set, not its clock, caches or memory.

``--against REV`` also runs every configuration with the code of git revision ``REV``
(``git archive`` into a temporary folder, put first on ``PYTHONPATH``), interleaved with the
current code: "as fast as before" measured side by side. The configurations' flags must
exist there; a prelude that patches a name the old code lacks fails the run (its ``assert``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_line  # noqa: E402

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
# The first layer plain (the lecture's form) even where training.fold_pays would fold it.
PLAIN = "import nametool.train.training as t; assert t.fold_pays; t.fold_pays = lambda *a: False; "
FOLD_AS_CHOSEN = ""
# PyTorch's own bfloat16 tanh (before train/model.py's FastTanh): the same bits, a slower kernel.
TORCH_TANH = "import nametool.train.model as m; assert m.FastTanh; m.FastTanh = m.nn.Tanh; "
# glibc's malloc as it comes (before runtime/memory.py): every step's buffers go back to the system.
MALLOC_AS_IS = "import nametool.runtime.memory as m; assert m.keep_freed_memory; m.keep_freed_memory = lambda: False; "
NEW_DEFAULT = ["--members", "3", "--hidden", "384", "--steps", "3000"]  # the default since 2026-11-29, spelled out
OLD_DEFAULT = ["--members", "2", "--hidden", "512", "--steps", "2500"]  # the default until 2026-11-29
CONFIGS = {  # name: (description, prelude, arguments)
    "fp32": ("default, fp32", FOLD_AS_CHOSEN, ["--precision", "fp32"]),
    "fp32-plain": ("default, fp32, first layer plain", PLAIN, ["--precision", "fp32"]),
    "old-fp32": ("old default (2 x 512, 2,500 steps), fp32", FOLD_AS_CHOSEN, ["--precision", "fp32", *OLD_DEFAULT]),
    "old-fp32-plain": ("old default, fp32, first layer plain (as issue #16 measured it)", PLAIN,
                       ["--precision", "fp32", *OLD_DEFAULT]),
    "bf16": ("default, bf16", FOLD_AS_CHOSEN, ["--precision", "bf16"]),
    "bf16-torch-tanh": ("default, bf16, PyTorch's bf16 tanh", TORCH_TANH, ["--precision", "bf16"]),
    "fp32-spelled": ("default, fp32, shape spelled out (for --against)", FOLD_AS_CHOSEN,
                     ["--precision", "fp32", *NEW_DEFAULT]),
    "bf16-spelled": ("default, bf16, shape spelled out (for --against)", FOLD_AS_CHOSEN,
                     ["--precision", "bf16", *NEW_DEFAULT]),
    # One evaluation, at the end: the time is close to 3,000 steps alone ("per step" side by side).
    "fp32-steps": ("default, fp32, one evaluation (for --against)", FOLD_AS_CHOSEN,
                   ["--precision", "fp32", *NEW_DEFAULT, "--eval-every", "3000"]),
    "bf16-steps": ("default, bf16, one evaluation (for --against)", FOLD_AS_CHOSEN,
                   ["--precision", "bf16", *NEW_DEFAULT, "--eval-every", "3000"]),
    "fp32-malloc": ("default, fp32, malloc as it comes", MALLOC_AS_IS, ["--precision", "fp32"]),
    "bf16-malloc": ("default, bf16, malloc as it comes", MALLOC_AS_IS, ["--precision", "bf16"]),
}


def code_tree(rev: str, folder: Path) -> Path:
    """The package folders of ``rev`` as an importable ``nametool`` namespace under ``folder``."""
    root = Path(__file__).resolve().parents[1]
    tree = folder / "tree"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", rev], capture_output=True)
    if archive.returncode:
        sys.exit(f"--against {rev}: {archive.stderr.decode(errors='replace').strip()}")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    (folder / "path" / "nametool").mkdir(parents=True)
    for package in ("runtime", "train", "export", "models", "web"):  # every package the install maps
        if (tree / package).is_dir():  # else nametool.<package> would come from the current install
            (folder / "path" / "nametool" / package).symlink_to(tree / package)
    found = subprocess.run([sys.executable, "-c", "import nametool.train; print(nametool.train.__file__)"],
                           env={**os.environ, "PYTHONPATH": str(folder / "path")}, capture_output=True, text=True)
    if not found.stdout.startswith(str(folder)):
        sys.exit(f"--against {rev}: nametool.train came from {found.stdout.strip() or found.stderr[-300:]}")
    return folder / "path"


def run(prelude: str, args: list[str], env: dict[str, str], out: str) -> tuple[float, float]:
    code = prelude + "import sys; from nametool.train.cli import main; sys.argv[0] = 'nametool'; main()"
    done = subprocess.run([sys.executable, "-c", code, "train", *args, "--out", out, "--force"],
                          env={**os.environ, **env}, capture_output=True, text=True)
    seconds = re.search(r"trained in ([0-9.]+)s", done.stdout)
    test = re.search(r"^\s*test\s+([0-9.]+)", done.stdout, re.M)
    if done.returncode or seconds is None or test is None:
        sys.exit(f"nametool train {' '.join(args)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return float(seconds.group(1)), float(test.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--isa", choices=("native", "avx2"), default="native")
    parser.add_argument("--only", default=",".join(CONFIGS), help="comma-separated, from: " + ", ".join(CONFIGS))
    parser.add_argument("--against", metavar="REV", help="also run each configuration with this revision's code")
    args = parser.parse_args()
    chosen = [name for name in CONFIGS if name in args.only.split(",")]
    env = AVX2_ENV if args.isa == "avx2" else {}
    codes = {"": env}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            old_path = code_tree(args.against, Path(tmp) / "old")
            codes[f" ({args.against}'s code)"] = {**env, "PYTHONPATH": str(old_path)}
        for _ in range(args.rounds):
            for name in chosen:
                for label, child_env in codes.items():
                    _, prelude, extra = CONFIGS[name]
                    found = run(prelude, extra, child_env, f"{tmp}/model.pt")
                    results.setdefault((name, label), []).append(found)
    print(f"{cpu_line()}; instructions: {args.isa}; {args.rounds} rounds, median\n")
    print("| configuration | train s (median) | all runs | test |\n|---|---|---|---|")
    for (name, label), runs in results.items():
        seconds = [s for s, _ in runs]
        every = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"| {CONFIGS[name][0]}{label} | {statistics.median(seconds):.1f} | {every} | {runs[0][1]:.4f} |")


if __name__ == "__main__":
    main()
