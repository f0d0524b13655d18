"""Generation speed, side by side in one run: the runtime's sampler against its bounds.

    python bench/bench_generate.py [--repeats 5]

For each model and batch size, on one thread:
- ``generate``: names/s of the runtime (``NameModel.generate``, onnxruntime + numpy);
- ``forward-only``: the same model in onnxruntime, the same batch, as many calls as
  the sampler needed characters at full batch: the bound a sampler can approach;
- ``torch one-by-one``: the makemore way, one name at a time, ``torch.multinomial``
  per character (batch-independent, measured once per model).
Figures are medians over ``--repeats`` interleaved rounds. Needs the train extra:
it trains both models (lecture size and default) on the default dataset first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from nametool.runtime import NameModel  # noqa: E402

BATCHES = (1, 64, 1024, 4096, 16384)
NAMES_AT = {1: 1000, 64: 20_000}  # fewer names where each costs more; the rest use 100,000
TORCH_NAMES = 300


def train_and_export(folder: Path, name: str, config, steps: int) -> tuple[Path, Path]:
    """Train on the default dataset and export; returns (checkpoint, .onnx)."""
    from nametool.export.onnx_export import export_onnx
    from nametool.train.config import TrainConfig
    from nametool.train.data import DEFAULT_MAX_LEN, DEFAULT_MIN_LEN, load_names
    from nametool.train.pipeline import run_training

    names = load_names(min_len=DEFAULT_MIN_LEN, max_len=DEFAULT_MAX_LEN)
    result = run_training(names, config, TrainConfig(steps=steps), folder / f"{name}.pt")
    export_onnx(result.checkpoint, folder / f"{name}.onnx")
    return folder / f"{name}.pt", folder / f"{name}.onnx"


def time_generate(model: NameModel, batch: int, count: int) -> tuple[float, int]:
    start = time.perf_counter()
    names = model.generate(count, seed=0, batch_size=batch)
    return time.perf_counter() - start, sum(len(n) + 1 for n in names)


def time_forward(model: NameModel, batch: int, chars: int) -> float:
    contexts = np.random.default_rng(0).integers(0, len(model.vocab), (batch, model.context_size))
    calls = -(-chars // batch)
    start = time.perf_counter()
    for _ in range(calls):
        model.logits(contexts)
    return time.perf_counter() - start


def time_torch_one_by_one(ckpt_model: torch.nn.Module, context_size: int, max_len: int) -> float:
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(TORCH_NAMES):
            context, length = [0] * context_size, 0
            while True:
                probs = F.softmax(ckpt_model(torch.tensor([context])), dim=1)
                ix = torch.multinomial(probs, 1, generator=gen).item()
                context = context[1:] + [ix]
                length += 1
                if ix == 0 or length > max_len:
                    break
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from nametool.train.checkpoint import load_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        from nametool.runtime.schema import ModelConfig
        from nametool.train.config import DEFAULT_MODEL, TrainConfig

        models = {
            "lecture (3/10/200)": train_and_export(Path(tmp), "lecture", ModelConfig(3, 10, (200,)), 3000),
            "default (8/32/384)": train_and_export(Path(tmp), "default", DEFAULT_MODEL, TrainConfig.steps),
        }
        print(f"| model | batch | generate names/s | generate chars/s | forward-only chars/s | "
              f"generate / forward time | torch one-by-one names/s | speed-up vs torch |")
        print("|---|---|---|---|---|---|---|---|")
        for label, (pt_path, onnx_path) in models.items():
            model = NameModel.load(onnx_path, threads=1)
            ckpt = load_checkpoint(pt_path)
            times = [time_torch_one_by_one(ckpt.model, model.context_size, model.meta.sampling.max_len)
                     for _ in range(3)]
            torch_rate = TORCH_NAMES / statistics.median(times)
            for batch in BATCHES:
                count = NAMES_AT.get(batch, 100_000)
                gen_times, fwd_times, chars = [], [], 0
                for _ in range(args.repeats):
                    seconds, chars = time_generate(model, batch, count)
                    gen_times.append(seconds)
                    fwd_times.append(time_forward(model, batch, chars))
                gen, fwd = statistics.median(gen_times), statistics.median(fwd_times)
                names_rate = count / gen
                torch_cells = f"{torch_rate:,.0f} | {names_rate / torch_rate:,.0f}x"
                print(f"| {label} | {batch:,} | {names_rate:,.0f} | {chars / gen:,.0f} | {chars / fwd:,.0f} | "
                      f"{gen / fwd:.2f} | {torch_cells} |", flush=True)


if __name__ == "__main__":
    main()
