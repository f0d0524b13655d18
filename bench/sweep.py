"""The sweep behind the defaults: quality, training time, size and generation speed per configuration.

    python bench/sweep.py                # every configuration below, about 15 to 20 minutes on 2 cores
    python bench/sweep.py --only 3,5     # some of them

Each configuration trains on the default dataset (seed 42, so every row sees the
same split) with all cores, is exported to ONNX, and its generation speed is
measured on one thread (names/s at batch 4096, median of 3). Prints a markdown
table; docs/sweep.md records a run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from nametool.export.onnx_export import export_onnx
from nametool.runtime import NameModel
from nametool.runtime.memory import keep_freed_memory
from nametool.runtime.schema import ModelConfig
from nametool.train.config import TrainConfig
from nametool.train.config import DEFAULT_MAX_LEN, DEFAULT_MIN_LEN
from nametool.train.data import load_names
from nametool.train.training import run_training

# (label, model, training): the lecture's model, then one change at a time. Rows 1 to 14
# train in fp32; rows 15 on change the batch, the precision and the number of members.
F32 = {"precision": "fp32"}
B512 = {"batch_size": 512, "lr": 3e-3, "weight_decay": 0.1, **F32}
B1024 = {"steps": 2500, "batch_size": 1024, "lr": 5e-3, "weight_decay": 0.1}
CONFIGS = [
    ("lecture", ModelConfig(3, 10, (200,)), TrainConfig(steps=8000, batch_size=256, lr=2e-3, weight_decay=0.01, **F32)),
    ("ctx 8, 32-d, 384", ModelConfig(8, 32, (384,)),
     TrainConfig(steps=8000, batch_size=256, lr=2e-3, weight_decay=0.01, **F32)),
    ("+ layer norm", ModelConfig(8, 32, (384,), "layer"),
     TrainConfig(steps=8000, batch_size=256, lr=2e-3, weight_decay=0.01, **F32)),
    ("+ dropout 0.2", ModelConfig(8, 32, (384,)),
     TrainConfig(steps=8000, batch_size=256, lr=2e-3, weight_decay=0.01, dropout=0.2, **F32)),
    ("+ batch 512, lr 3e-3, wd 0.1", ModelConfig(8, 32, (384,)), TrainConfig(steps=6000, **B512)),
    ("+ hidden 512", ModelConfig(8, 32, (512,)), TrainConfig(steps=5000, **B512)),
    ("+ context 10", ModelConfig(10, 32, (512,)), TrainConfig(steps=5000, **B512)),
    ("  ... 7000 steps", ModelConfig(10, 32, (512,)), TrainConfig(steps=7000, **B512)),
    ("  ... dropout 0.1", ModelConfig(10, 32, (512,)), TrainConfig(steps=5000, dropout=0.1, **B512)),
    ("  ... context 12", ModelConfig(12, 32, (512,)), TrainConfig(steps=5000, **B512)),
    ("  ... hidden 768, wd 0.2", ModelConfig(10, 32, (768,)),
     TrainConfig(steps=5000, batch_size=512, lr=3e-3, weight_decay=0.2, **F32)),
    ("  ... 48-d, layer norm, lr 2e-3", ModelConfig(10, 48, (512,), "layer"),
     TrainConfig(steps=4000, batch_size=512, lr=2e-3, weight_decay=0.1, **F32)),
    ("  ... 24-d, 256x2, layer norm", ModelConfig(10, 24, (256, 256), "layer"), TrainConfig(steps=5000, **B512)),
    ("the issue's trial: 512x2, layer norm", ModelConfig(10, 32, (512, 512), "layer"),
     TrainConfig(steps=4000, batch_size=512, lr=1e-3, weight_decay=0.01, **F32)),
    ("row 7 at batch 1024, lr 5e-3, 2500 steps", ModelConfig(10, 32, (512,)), TrainConfig(**B1024, **F32)),
    ("  ... bf16 forward (AMX)", ModelConfig(10, 32, (512,)), TrainConfig(**B1024, precision="bf16")),
    ("  ... 2 members averaged, fp32", ModelConfig(10, 32, (512,), members=2), TrainConfig(**B1024, **F32)),
    ("  ... 2 members, bf16 (the default until 2026-11-29)", ModelConfig(10, 32, (512,), members=2),
     TrainConfig(**B1024, precision="bf16")),
    ("  ... 2 members of 384, bf16", ModelConfig(10, 32, (384,), members=2), TrainConfig(**B1024, precision="bf16")),
    ("  ... 3 members, bf16", ModelConfig(10, 32, (512,), members=3), TrainConfig(**B1024, precision="bf16")),
    ("  ... 3 members, 3000 steps, bf16", ModelConfig(10, 32, (512,), members=3),
     TrainConfig(**{**B1024, "steps": 3000}, precision="bf16")),
    ("  ... 3 members, 3000 steps, fp32", ModelConfig(10, 32, (512,), members=3),
     TrainConfig(**{**B1024, "steps": 3000}, **F32)),
    ("  ... 3 members of 384, 3000 steps, bf16 (default)", ModelConfig(10, 32, (384,), members=3),
     TrainConfig(**{**B1024, "steps": 3000}, precision="bf16")),
    ("  ... 3 members of 384, 3000 steps, fp32", ModelConfig(10, 32, (384,), members=3),
     TrainConfig(**{**B1024, "steps": 3000}, **F32)),
    ("  ... 2 members of 640, 3000 steps, bf16", ModelConfig(10, 32, (640,), members=2),
     TrainConfig(**{**B1024, "steps": 3000}, precision="bf16")),
    ("  ... 2 members of 768, bf16", ModelConfig(10, 32, (768,), members=2), TrainConfig(**B1024, precision="bf16")),
]


def generation_speed(path: Path, count: int = 20_000, repeats: int = 3) -> float:
    model = NameModel.load(path, threads=1)
    model.generate(1000, seed=0)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.generate(count, seed=0, batch_size=4096)
        times.append(time.perf_counter() - start)
    return count / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated row numbers (1-based)")
    args = parser.parse_args()
    keep_freed_memory()  # as nametool train does, so the time column is the command's
    rows = [int(i) for i in args.only.split(",")] if args.only else range(1, len(CONFIGS) + 1)
    names = load_names(min_len=DEFAULT_MIN_LEN, max_len=DEFAULT_MAX_LEN)
    print("| # | configuration | context | embed | hidden | norm | dropout | members | batch | steps | precision | "
          "train s | val | test | parameters | file KiB | names/s (1 thread) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for row in rows:
            label, config, train_config = CONFIGS[row - 1]
            result = run_training(names, config, train_config, Path(tmp) / f"{row}.pt")
            onnx_path = Path(tmp) / f"{row}.onnx"
            report = export_onnx(result.checkpoint, onnx_path)
            params = config.parameter_count(len(result.checkpoint.meta.vocab))
            print(f"| {row} | {label} | {config.context_size} | {config.embed_dim} | "
                  f"{','.join(map(str, config.hidden))} | {config.norm} | {train_config.dropout} | "
                  f"{config.members} | {train_config.batch_size} | {train_config.steps} | "
                  f"{result.checkpoint.train_config.precision} | {result.seconds:.1f} | "
                  f"{result.losses['val']:.4f} | {result.losses['test']:.4f} | {params:,} | "
                  f"{report.size_bytes / 1024:.0f} | {generation_speed(onnx_path):,.0f} |", flush=True)


if __name__ == "__main__":
    main()
