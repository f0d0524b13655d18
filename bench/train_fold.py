"""Training step time, plain first layer against folded, side by side.

    python bench/train_fold.py [--repeats 5]

For the default's shape (two members and one), and the lecture's, in fp32 and in
bf16 autocast: full AdamW steps (forward, backward, update) on random windows,
medians of ``--repeats`` timings of 30 steps, the two forms interleaved. The
result sets ``training.fold_pays``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from nametool.runtime.schema import ModelConfig
from nametool.runtime.memory import keep_freed_memory
from nametool.train.kernels import adamw_step
from nametool.train.model import build_model

SHAPES = {
    "default (3 members of 384)": (ModelConfig(10, 32, (384,), members=3), 1024),
    "one member of the default": (ModelConfig(10, 32, (384,)), 1024),
    "old default (2 members of 512)": (ModelConfig(10, 32, (512,), members=2), 1024),
    "one member of 512 (issue #16's trial)": (ModelConfig(10, 32, (512,)), 1024),
    "lecture": (ModelConfig(3, 10, (200,)), 256),
}
VOCAB = 27


def step_ms(model, optimizer, contexts, targets, batch: int, steps: int, bf16: bool) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        rows = torch.randint(len(targets), (batch,))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = model.member_logits(contexts[rows])  # (members, batch, vocab)
        loss = F.cross_entropy(outputs.float().flatten(0, 1), targets[rows].repeat(len(outputs)))  # as training's
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        adamw_step(optimizer)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", choices=("fp32", "bf16", "both"), default="both",
                        help="bf16 only pays with AMX; under the AVX2 proxy (docs/benchmarks.md) run fp32")
    args = parser.parse_args()
    keep_freed_memory()  # as nametool train does
    print("| shape | precision | plain ms/step | folded ms/step | folded speed-up |\n|---|---|---|---|---|")
    for name, (config, batch) in SHAPES.items():
        torch.manual_seed(0)
        contexts = torch.randint(0, VOCAB, (200_000, config.context_size))
        targets = torch.randint(0, VOCAB, (200_000,))
        for bf16 in {"fp32": (False,), "bf16": (True,), "both": (False, True)}[args.precision]:
            models = {fold: build_model(VOCAB, config) for fold in (False, True)}
            for fold, model in models.items():
                model.fold = fold
            optimizers = {fold: torch.optim.AdamW(m.parameters(), lr=1e-3, fused=True) for fold, m in models.items()}
            times = {False: [], True: []}
            for fold in (False, True):  # warm-up
                step_ms(models[fold], optimizers[fold], contexts, targets, batch, 10, bf16)
            for _ in range(args.repeats):
                for fold in (False, True):
                    times[fold].append(step_ms(models[fold], optimizers[fold], contexts, targets, batch, 30, bf16))
            plain, folded = statistics.median(times[False]), statistics.median(times[True])
            print(f"| {name} | {'bf16' if bf16 else 'fp32'} | {plain:.2f} | {folded:.2f} | {plain / folded:.2f} |")


if __name__ == "__main__":
    main()
