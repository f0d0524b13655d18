"""Checkpoints: the best weights, the one schema, the data split and the state to resume, in one file.

The file is a ``torch.save`` of plain containers (tensors, strings, numbers) and is
read back with ``torch.load(weights_only=True)``, which refuses to unpickle
arbitrary objects: loading a checkpoint never runs code from it. Writes are atomic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from nametool.export.atomic import atomic_path
from nametool.runtime.errors import ModelFileError
from nametool.runtime.schema import ModelMeta
from nametool.train.config import TrainConfig
from nametool.train.loop import LoopState
from nametool.train.model import NameMLP

FORMAT = "nametool-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    meta: ModelMeta
    model: NameMLP  # with the best weights seen on val
    splits: dict[str, list[str]]  # train / val / test names
    train_config: TrainConfig
    loop: LoopState  # history, and what --resume continues from

    @property
    def history(self) -> dict[str, list[float]]:
        return self.loop.history


def save_checkpoint(path: Path, ckpt: Checkpoint, *, force: bool = False) -> None:
    loop = ckpt.loop
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": ckpt.meta.to_json(),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()},
        "splits": json.dumps(ckpt.splits, ensure_ascii=False),
        "train_config": json.dumps(ckpt.train_config.to_dict()),
        "history": json.dumps(loop.history),
        "resume": {
            "numbers": json.dumps({"step": loop.step, "smoothed": loop.smoothed, "best_val": loop.best_val,
                                   "bad_evals": loop.bad_evals, "seconds": loop.seconds}),
            "optimizer": loop.optimizer,
            "batch_rng": loop.batch_rng,
            "torch_rng": loop.torch_rng,
            "last_weights": loop.last_weights,
            "best_weights": loop.best_weights,
        },
    }
    with atomic_path(path, force=force) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> Checkpoint:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise ModelFileError(f"{path}: is not a file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign, corrupt or unsafe files
        raise ModelFileError(f"{path}: not a nametool checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a nametool checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: checkpoint format version {payload.get('format_version')!r} is not one "
                             f"this nametool reads ({FORMAT_VERSION}); retrain or use a matching nametool")
    try:
        meta = ModelMeta.from_json(payload["meta"])
        model = NameMLP(len(meta.vocab), meta.model)
        model.load_state_dict(payload["state_dict"], strict=True)
        config = json.loads(payload["train_config"])
        train_config = TrainConfig(**{f.name: config[f.name] for f in fields(TrainConfig) if f.name in config})
        resume = payload["resume"]
        loop = LoopState(**json.loads(resume["numbers"]), history=json.loads(payload["history"]),
                         optimizer=resume["optimizer"], batch_rng=resume["batch_rng"],
                         torch_rng=resume["torch_rng"], last_weights=resume["last_weights"],
                         best_weights=resume["best_weights"])
        splits = json.loads(payload["splits"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: damaged checkpoint ({type(exc).__name__}: {str(exc)[:120]})") from None
    model.eval()
    return Checkpoint(meta, model, splits, train_config, loop)


def newest_checkpoint(runs_dir: Path) -> Path:
    found = sorted(Path(runs_dir).glob("*/model.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ModelFileError(f"no checkpoint under {runs_dir}/ (run 'nametool train' or pass --checkpoint)")
    return found[-1]
