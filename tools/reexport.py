"""Re-export a float-form model file in another form, from the weights it holds.

The bundled models were trained once; their checkpoints are not shipped. A float file
holds every trained weight under its state-dict name (a folded file keeps E and W1 as
they are), and its metadata holds the schema and the names and seed of its split, so
the checkpoint export needs can be rebuilt from the file alone:

    python tools/reexport.py models/default-float.onnx models/default.onnx --form exact
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from nametool.export.onnx_export import export_onnx
from nametool.runtime.model import NameModel
from nametool.runtime.onnxfile import read_onnx
from nametool.train.checkpoint import Checkpoint, LoopState
from nametool.train.config import TrainConfig
from nametool.train.evaluate import splits_from_meta
from nametool.train.model import build_model


def checkpoint_from_file(path: Path) -> Checkpoint:
    meta = NameModel.load(path, engine="numpy").meta
    if meta.form != "float" or meta.quantization is not None:
        raise SystemExit(f"{path}: not a float fp32 file; its weights are not the trained ones")
    model = build_model(len(meta.vocab), meta.model)
    stored = read_onnx(path.read_bytes()).initializers
    state = {name: torch.from_numpy(np.array(stored[name])) for name in model.state_dict()}
    model.load_state_dict(state, strict=True)
    meta = replace(meta, golden=None, integrity=None, graph=None, quantization=None, exact=None)
    return Checkpoint(meta, model.eval(), splits_from_meta(meta), TrainConfig(), LoopState())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--form", choices=("exact", "float"), default="exact")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    report = export_onnx(checkpoint_from_file(args.source), args.out, form=args.form, force=args.force)
    print(f"{args.source} -> {report.path} ({report.size_bytes / 1024:.1f} KiB, {args.form})")
    if report.quantization is not None:
        q = report.quantization
        print(f"val loss {q.val_loss_fp32:.5f} -> {q.val_loss:.5f}, mean KL {q.mean_kl:.6f} nats")


if __name__ == "__main__":
    main()
