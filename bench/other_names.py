"""nametool's defaults against makemore's MLP on another names file, the same split and time.

    python bench/other_names.py NAMES.txt [--label "English first names"]

Trains `nametool train`'s defaults (as the command would, any length bounds the file has),
then makemore's MLP (bench/makemore_mlp.py) for the same wall time and for three times it,
on the same 80/10/10 split (seed 42), one process after the other on this machine. Test
losses are nats per character (the end included) of each one's best-validation weights.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.makemore_mlp import train_for  # noqa: E402
from bench.machine import cpu_line  # noqa: E402
from nametool.train.config import DEFAULT_CONFIG, TrainConfig, auto_steps  # noqa: E402
from nametool.train.data import load_names, split_names  # noqa: E402
from nametool.train.training import run_training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", type=Path)
    parser.add_argument("--label", default=None)
    args = parser.parse_args()
    names = load_names(args.names)
    splits = dict(zip(("train", "val", "test"), split_names(names.names, TrainConfig.seed)))
    lengths = sorted(len(n) for n in names.names)
    print(f"{args.label or args.names.name}: {len(names.names):,} names, {lengths[0]} to {lengths[-1]} characters; "
          f"CPU: {cpu_line()}\n")
    steps = auto_steps(sum(len(name) + 1 for name in splits["train"]), TrainConfig.batch_size)  # as the CLI
    config = TrainConfig(steps=steps, warmup=min(TrainConfig.warmup, steps // 10),
                         eval_every=min(TrainConfig.eval_every, steps))
    with tempfile.TemporaryDirectory() as folder:
        ours = run_training(names, DEFAULT_CONFIG, config, Path(folder) / "m.pt")
    precision = ours.checkpoint.train_config.precision
    print("| model | training s | steps | val | test |")
    print("|---|---|---|---|---|")
    print(f"| nametool defaults ({precision}) | {ours.seconds:.1f} | {ours.checkpoint.loop.step:,} | "
          f"{ours.losses['val']:.4f} | {ours.losses['test']:.4f} |")
    for factor in (1, 3):
        test, steps, val = train_for(factor * ours.seconds, splits)
        print(f"| makemore's MLP, {'the same time' if factor == 1 else f'{factor} times the time'} | "
              f"{factor * ours.seconds:.1f} | {steps:,} | {val:.4f} | {test:.4f} |")


if __name__ == "__main__":
    main()
