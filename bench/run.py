"""The benchmark suite: every footprint and speed measurement, side by side in one run.

    python bench/run.py                 # about 6 minutes on 2 cores
    python bench/run.py --skip-install  # without the fresh-venv install sizes (the slow part)
    python bench/run.py --quick         # fewer repeats, for trying the script
    python bench/run.py --only speedup  # some sections: cold,generation,speedup,files,session,install,training

Prints markdown tables (medians of several runs; ratios are taken within this
run). Needs the train extra: it trains the models it compares against.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from torch.nn import functional as F

from nametool.export.onnx_export import export_onnx
from nametool.runtime import NameModel
from nametool.runtime import generation
from nametool.runtime.memory import keep_freed_memory
from nametool.runtime.model import bundled_models
from nametool.train.checkpoint import load_checkpoint
from nametool.train.config import DEFAULT_CONFIG, LECTURE_CONFIG, TrainConfig
from nametool.train.config import DEFAULT_MAX_LEN, DEFAULT_MIN_LEN
from nametool.train.data import load_names
from nametool.runtime.windows import build_windows
from nametool.train.training import Windows, mean_loss, resolve_precision, step_macs, train_model
from nametool.train.model import CharModel, build_model
from nametool.train.training import run_training

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CORES = os.cpu_count() or 1


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"{CORES} cores, {cpu}, Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, "
            f"numpy {np.__version__}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- whole processes: cold start and peak memory -------------------------------------------------

def times(ratio: float) -> str:
    return f"{ratio:.1f}×" if ratio < 10 else f"{ratio:,.0f}×"


def run_process(args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process.

    GNU time measures the peak RSS: a child forked from this process would count
    the pages it shares with it (torch included) before its exec.
    """
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        return seconds, int(report.read().split()[-1]) / 1024


def cold_start(ckpt: Path, repeats: int) -> str:
    commands = {
        "`python -c 'import onnxruntime, numpy'`": [sys.executable, "-c", "import onnxruntime, numpy"],
        "`nametool-run generate -n 1`": [str(BIN / "nametool-run"), "generate", "-n", "1"],
        "`nametool-run --help`": [str(BIN / "nametool-run"), "--help"],
        "`python -c 'import torch'`": [sys.executable, "-c", "import torch"],
        "one-name PyTorch sampler, same model": [sys.executable, str(ROOT / "bench" / "torch_one_name.py"),
                                                 str(ckpt)],
    }
    base_label, generate_label = "`python -c 'import onnxruntime, numpy'`", "`nametool-run generate -n 1`"
    samples = interleaved(commands, repeats)
    with byte_compiled([ROOT / "runtime", ROOT / "models"]):  # as `pip install` leaves an installed package
        compiled = interleaved({base_label: commands[base_label], generate_label: commands[generate_label]},
                               repeats)
    base = statistics.median(s for s, _ in samples[base_label])
    torch_s = statistics.median(s for s, _ in samples["`python -c 'import torch'`"])
    rows = []
    for label, runs, own_base in [*((label, runs, base) for label, runs in samples.items()),
                                  (generate_label + ", nametool byte-compiled", compiled[generate_label],
                                   statistics.median(s for s, _ in compiled[base_label]))]:
        seconds = statistics.median(s for s, _ in runs)
        rss = statistics.median(m for _, m in runs)
        rows.append([label, f"{seconds * 1000:.0f}", f"{seconds / own_base:.2f}", f"{seconds / torch_s:.2f}",
                     f"{rss:.0f}"])
    return table(["process", "wall ms", "× import onnxruntime, numpy", "× import torch", "peak RSS MB"], rows)


def interleaved(commands: dict[str, list[str]], repeats: int) -> dict[str, list[tuple[float, float]]]:
    """(seconds, peak RSS MB) of each command, ``repeats`` times, in turns: drift hits every row alike."""
    samples = {label: [] for label in commands}
    for _ in range(repeats):
        for label, args in commands.items():
            samples[label].append(run_process(args))
    return samples


@contextlib.contextmanager
def byte_compiled(folders: list[Path]):
    """Our modules with their bytecode cached, for the length of the block.

    Where ``PYTHONDONTWRITEBYTECODE`` is set (as in this workplace), an editable
    install compiles nametool from source on every start, which an installed
    package (``pip install`` byte-compiles it) never does.
    """
    fresh = [folder / "__pycache__" for folder in folders if not (folder / "__pycache__").exists()]
    for folder in folders:
        compileall.compile_dir(folder, quiet=1, maxlevels=0)
    try:
        yield
    finally:
        for cache in fresh:
            shutil.rmtree(cache, ignore_errors=True)


# -- generation throughput -------------------------------------------------------------------------

def time_generate(model: NameModel, batch: int, count: int, share: bool = True) -> tuple[float, int]:
    """Seconds to generate ``count`` names, and the characters made (ends included).

    ``share=False`` turns off the engine's sharing of equal contexts, to show what it gains.
    """
    saved = generation.SHARE_UNTIL
    generation.SHARE_UNTIL = saved if share else 0
    try:
        start = time.perf_counter()
        names = model.generate(count, seed=0, batch_size=batch)
        return time.perf_counter() - start, sum(len(n) + 1 for n in names)
    finally:
        generation.SHARE_UNTIL = saved


def time_forward(model: NameModel, batch: int, chars: int) -> float:
    contexts = np.random.default_rng(0).integers(0, len(model.vocab), (batch, model.context_size))
    start = time.perf_counter()
    for _ in range(-(-chars // batch)):
        model.logits(contexts)
    return time.perf_counter() - start


def torch_one_by_one(net: torch.nn.Module, context_size: int, max_len: int, count: int) -> tuple[float, int]:
    """The makemore way: one name at a time, ``torch.multinomial`` per character."""
    gen = torch.Generator().manual_seed(0)
    chars = 0
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(count):
            context = [0] * context_size
            for _ in range(max_len + 1):
                probs = F.softmax(net(torch.tensor([context])), dim=1)
                ix = torch.multinomial(probs, 1, generator=gen).item()
                context = context[1:] + [ix]
                chars += 1
                if ix == 0:
                    break
    return time.perf_counter() - start, chars


def throughput(onnx_path: Path, ckpt_path: Path, repeats: int) -> str:
    net = load_checkpoint(ckpt_path).model
    rows = []
    for threads in sorted({1, CORES}):
        torch.set_num_threads(threads)
        model = NameModel.load(onnx_path, threads=threads)
        max_len = model.meta.sampling.max_len
        t_runs = [torch_one_by_one(net, model.context_size, max_len, 200) for _ in range(3)]
        torch_rate = 200 / statistics.median(s for s, _ in t_runs)
        for batch in (1, 64, 1024, 4096, 16384):
            count = {1: 1000, 64: 10_000}.get(batch, 60_000)
            gens, unshared, fwds, chars = [], [], [], 0
            for _ in range(repeats):  # interleaved, so drift on a shared machine hits every column alike
                seconds, chars = time_generate(model, batch, count)
                gens.append(seconds)
                unshared.append(time_generate(model, batch, count, share=False)[0])
                fwds.append(time_forward(model, batch, chars))
            gen, alone, fwd = statistics.median(gens), statistics.median(unshared), statistics.median(fwds)
            rows.append([threads, f"{batch:,}", f"{count / gen:,.0f}", f"{chars / gen:,.0f}", f"{count / alone:,.0f}",
                         f"{chars / fwd:,.0f}", f"{gen / fwd:.2f}", f"{alone / fwd:.2f}", f"{torch_rate:,.0f}",
                         times(count / gen / torch_rate)])
    torch.set_num_threads(CORES)
    return table(["threads", "batch", "names/s", "chars/s", "names/s, no shared contexts", "forward-only chars/s",
                  "generate ÷ forward time", "no sharing ÷ forward time", "PyTorch one-by-one names/s", "speed-up"],
                 rows)


SPEEDUP_MODELS = [  # (label, model, training): one model per row, the PyTorch loop of that very model
    (f"default: {DEFAULT_CONFIG.members} members of {DEFAULT_CONFIG.hidden[0]}", DEFAULT_CONFIG, TrainConfig()),
    (f"1 member of {DEFAULT_CONFIG.hidden[0]} (`--members 1`)", replace(DEFAULT_CONFIG, members=1), TrainConfig()),
    ("lecture: context 3, 10-d, 200", LECTURE_CONFIG,
     TrainConfig(steps=8000, batch_size=256, lr=2e-3, weight_decay=0.01, precision="fp32")),
]


def speedups(names, folder: Path, repeats: int) -> str:
    """One thread: generate at batch 1,024 and 4,096 against the forward-only bound and the one-name
    PyTorch sampler of the same model, for each model size."""
    trained = []
    for i, (label, config, train_config) in enumerate(SPEEDUP_MODELS):
        ckpt, onnx_path = folder / f"speed{i}.pt", folder / f"speed{i}.onnx"
        export_onnx(run_training(names, config, train_config, ckpt).checkpoint, onnx_path)
        trained.append((label, config, load_checkpoint(ckpt).model, onnx_path))
    torch.set_num_threads(1)
    rows = []
    for label, config, net, onnx_path in trained:
        model = NameModel.load(onnx_path, threads=1)
        model.generate(1000, seed=0)  # warm-up
        t_runs = [torch_one_by_one(net, config.context_size, model.meta.sampling.max_len, 200) for _ in range(3)]
        torch_rate = 200 / statistics.median(s for s, _ in t_runs)
        row = [label, f"{config.parameter_count(len(model.vocab)):,}", f"{torch_rate:,.0f}"]
        for batch in (1024, 4096):
            gens, fwds = [], []
            for _ in range(repeats):
                seconds, chars = time_generate(model, batch, 40_000)
                gens.append(seconds)
                fwds.append(time_forward(model, batch, chars))
            gen, fwd = statistics.median(gens), statistics.median(fwds)
            row += [f"{40_000 / gen:,.0f}", f"{gen / fwd:.2f}", times(40_000 / gen / torch_rate)]
        rows.append(row)
    torch.set_num_threads(CORES)
    return table(["model", "parameters", "PyTorch one-by-one names/s",
                  "batch 1,024: names/s", "÷ forward-only time", "speed-up",
                  "batch 4,096: names/s", "÷ forward-only time", "speed-up"], rows)


def model_files(repeats: int) -> str:
    """Each bundled file on each engine, one thread (numpy's BLAS is left at its own default)."""
    rows = []
    for name, path in bundled_models().items():
        speeds = []
        for engine_name in ("onnxruntime", "numpy"):
            model = NameModel.load(path, threads=1, engine=engine_name)
            model.generate(500, seed=0)
            runs = [time_generate(model, 4096, 40_000)[0] for _ in range(repeats)]
            speeds.append(f"{40_000 / statistics.median(runs):,.0f}")
        q = model.meta.quantization
        rows.append([name, q.scheme if q else "fp32", f"{path.stat().st_size / 1024:,.0f}",
                     f"{model.meta.model.parameter_count(len(model.vocab)):,}",
                     f"{model.meta.provenance.test_loss:.4f}", *speeds])
    return table(["bundled model", "weights", "file KiB", "parameters", "test loss",
                  "names/s, onnxruntime (1 thread, batch 4096)",
                  "names/s, numpy engine (OpenBLAS's own thread count)"], rows)


def session_options(onnx_path: Path, repeats: int) -> str:
    """The onnxruntime settings the runtime uses, against the alternatives, at batch 1 and 4096."""
    import onnxruntime as ort

    from nametool.runtime.schema import INPUT_NAME, OUTPUT_NAME

    variants = {
        "1 thread, all graph optimisations, arena on": {},
        "graph optimisations basic only": {"graph_optimization_level": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC},
        "memory arena off": {"enable_cpu_mem_arena": False},
        f"{CORES} threads (the runtime's default: one per core)": {"intra_op_num_threads": CORES},
    }
    rows = []
    for label, changes in variants.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        for key, value in changes.items():
            setattr(options, key, value)
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        cells = [label]
        for batch in (1, 4096):
            x = np.zeros((batch, NameModel.load(onnx_path).context_size), dtype=np.int64)
            calls = 4000 if batch == 1 else 40
            runs = []
            for _ in range(repeats):
                start = time.perf_counter()
                for _ in range(calls):
                    session.run([OUTPUT_NAME], {INPUT_NAME: x})
                runs.append(time.perf_counter() - start)
            cells.append(f"{calls * batch / statistics.median(runs):,.0f}")
        rows.append(cells)
    return table(["onnxruntime session", "rows/s at batch 1", "rows/s at batch 4096"], rows)


# -- install size ------------------------------------------------------------------------------------

def venv_size(folder: Path, packages: list[str]) -> int:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + packages, check=True, cwd=ROOT)
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def install_sizes() -> str:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deps = venv_size(tmp / "deps", ["onnxruntime", "numpy", "click"])
        base = venv_size(tmp / "base", [str(ROOT)])
        full = venv_size(tmp / "train", ["-c", str(ROOT / "constraints.txt"), f"{ROOT}[train]"])
    mb = 1024 * 1024
    rows = [["venv with onnxruntime, numpy, click only", f"{deps / mb:,.1f}", ""],
            ["`pip install nametool` (base: what a device gets)", f"{base / mb:,.1f}", f"+{(base - deps) / mb:,.1f}"],
            ["`pip install 'nametool[train]'`", f"{full / mb:,.1f}", f"+{(full - deps) / mb:,.1f}"]]
    return table(["fresh venv", "size MB", "over the runtime's dependencies"], rows)


# -- training ----------------------------------------------------------------------------------------

THRESHOLDS = (2.2, 2.1, 2.0, 1.95, 1.92)


def lecture_style(model: CharModel, train: Windows, val: Windows, steps: int, evals: list) -> float:
    """makemore's lecture loop: batch 32, plain SGD at 0.1, then 0.01 for the last third."""
    gen = torch.Generator().manual_seed(0)
    params = list(model.parameters())
    start = time.perf_counter()
    for step in range(steps):
        batch = torch.randint(len(train.targets), (32,), generator=gen)
        outputs = model.member_logits(train.contexts[batch])  # each member fits the data, as in ours
        loss = sum(F.cross_entropy(out, train.targets[batch]) for out in outputs) / len(outputs)
        for p in params:
            p.grad = None
        loss.backward()
        lr = 0.1 if step < 2 * steps // 3 else 0.01
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        if (step + 1) % 2000 == 0:
            evals.append((time.perf_counter() - start, mean_loss(model, val)))
            model.train()
    return time.perf_counter() - start


def training(names) -> str:
    from nametool.train.data import build_vocab, split_names

    vocab = build_vocab(names.names)
    train_names, val_names, _ = split_names(names.names, 42)
    train = Windows.from_numpy(*build_windows(train_names, vocab, DEFAULT_CONFIG.context_size))
    val = Windows.from_numpy(*build_windows(val_names, vocab, DEFAULT_CONFIG.context_size))
    rows = []
    torch.manual_seed(42)
    ours, config = build_model(len(vocab), DEFAULT_CONFIG), TrainConfig(eval_every=100)
    evals = []
    start = time.perf_counter()
    outcome = train_model(ours, train, val, config,
                          after_eval=lambda s: evals.append((time.perf_counter() - start, s.history["val_loss"][-1])))
    precision = resolve_precision(config.precision, "cpu", step_macs(ours, config.batch_size))
    rows.append([f"nametool defaults (AdamW, batch {config.batch_size}, cosine, {precision} forward)",
                 outcome.state.seconds, config.steps * config.batch_size, evals])
    torch.manual_seed(42)
    evals2: list = []
    steps = 60_000
    seconds = lecture_style(build_model(len(vocab), DEFAULT_CONFIG), train, val, steps, evals2)
    rows.append(["lecture-style loop (SGD 0.1 then 0.01, batch 32, fp32)", seconds, steps * 32, evals2])
    out = []
    for label, seconds, examples, history in rows:
        reach = []
        for threshold in THRESHOLDS:
            hit = next((t for t, v in history if v <= threshold), None)
            reach.append("not reached" if hit is None else f"{hit:.1f} s")
        out.append([label, f"{examples / seconds:,.0f}", f"{seconds:.1f}", f"{min(v for _, v in history):.4f}", *reach])
    return table(["training, default model", "examples/s", "wall s", "best val", *[f"val ≤ {t}" for t in THRESHOLDS]],
                 out)


SECTIONS = ("cold", "generation", "speedup", "files", "session", "install", "training")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-install", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections: {','.join(SECTIONS)}")
    args = parser.parse_args()
    keep_freed_memory()  # as nametool train and large numpy-engine generates do (runtime/memory.py)
    only = set(args.only.split(","))
    if args.skip_install:
        only.discard("install")
    if only - set(SECTIONS):
        parser.error(f"unknown sections: {','.join(sorted(only - set(SECTIONS)))}")
    repeats = 3 if args.quick else 5
    print(f"Machine: {machine()}\n", flush=True)
    names = load_names(min_len=DEFAULT_MIN_LEN, max_len=DEFAULT_MAX_LEN)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, onnx_path = Path(tmp) / "default.pt", Path(tmp) / "default.onnx"
        if only & {"cold", "generation", "session"}:
            export_onnx(run_training(names, DEFAULT_CONFIG, TrainConfig(), ckpt).checkpoint, onnx_path)
        sections = {
            "cold": ("Cold start and memory (whole process, default model)", lambda: cold_start(ckpt, repeats)),
            "generation": ("Generation, default model", lambda: throughput(onnx_path, ckpt, repeats)),
            "speedup": ("Against the one-name PyTorch sampler of the same model, one thread",
                        lambda: speedups(names, Path(tmp), repeats)),
            "files": ("Model files", lambda: model_files(repeats)),
            "session": ("onnxruntime session options, default model, one thread unless said",
                        lambda: session_options(onnx_path, repeats)),
            "install": ("Install size", install_sizes),
            "training": ("Training to val-loss thresholds (all cores)", lambda: training(names)),
        }
        for key in SECTIONS:
            if key in only:
                title, run = sections[key]
                print(f"### {title}\n\n{run()}\n", flush=True)


if __name__ == "__main__":
    main()
