"""The exact form against the float form of the same weights: losses on a names file's split.

    python bench/exact_quality.py NAMES.txt [--label "English first names"] [--steps N]

Trains `nametool train`'s defaults on the file (its own length bounds, split seed 42), exports
the checkpoint in both forms and prints each file's train/val/test loss (nats per character,
the end included) as `nametool eval` computes them. The bundled default's figures come from
its file: `nametool eval default-float` against `nametool eval default`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_line  # noqa: E402
from nametool.export.onnx_export import export_onnx  # noqa: E402
from nametool.runtime.model import NameModel  # noqa: E402
from nametool.train.config import DEFAULT_CONFIG, TrainConfig, auto_steps  # noqa: E402
from nametool.train.data import load_names, split_names  # noqa: E402
from nametool.train.evaluate import split_loss  # noqa: E402
from nametool.train.training import run_training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", type=Path)
    parser.add_argument("--label", default=None)
    parser.add_argument("--steps", type=int, default=None)
    args = parser.parse_args()
    names = load_names(args.names)
    splits = dict(zip(("train", "val", "test"), split_names(names.names, TrainConfig.seed)))
    steps = args.steps or auto_steps(sum(len(name) + 1 for name in splits["train"]), TrainConfig.batch_size)
    config = TrainConfig(steps=steps, warmup=min(TrainConfig.warmup, steps // 10),
                         eval_every=min(TrainConfig.eval_every, steps))
    print(f"{args.label or args.names.name}: {len(names.names):,} names, {len(set(''.join(names.names)))} "
          f"characters, {steps} steps; CPU: {cpu_line()}")
    with tempfile.TemporaryDirectory() as folder:
        result = run_training(names, DEFAULT_CONFIG, config, Path(folder) / "m.pt")
        print("| form | train | val | test | file KiB |\n|---|---|---|---|---|")
        for form in ("float", "exact"):
            path = Path(folder) / f"{form}.onnx"
            export_onnx(result.checkpoint, path, form=form)
            model = NameModel.load(path)
            splits = result.checkpoint.splits
            losses = [split_loss(model.logits, model.meta, splits[s]) for s in ("train", "val", "test")]
            print(f"| {form} | " + " | ".join(f"{v:.5f}" for v in losses) + f" | {path.stat().st_size / 1024:.0f} |")


if __name__ == "__main__":
    main()
