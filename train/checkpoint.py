"""Checkpoints: weights, the one schema and the data splits in one file, written atomically.

The file is a ``torch.save`` of plain containers (tensors, strings, numbers) and is
read back with ``torch.load(weights_only=True)``, which refuses to unpickle
arbitrary objects: loading a checkpoint never runs code from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from nametool.export.atomic import atomic_path
from nametool.runtime.errors import ModelFileError
from nametool.runtime.schema import ModelMeta
from nametool.train.model import NameMLP

FORMAT = "nametool-checkpoint"


@dataclass
class Checkpoint:
    meta: ModelMeta
    model: NameMLP
    splits: dict[str, list[str]]  # train / val / test names
    history: dict[str, list[float]]  # step, train_loss, val_loss


def save_checkpoint(path: Path, ckpt: Checkpoint, *, force: bool = False) -> None:
    payload = {
        "format": FORMAT,
        "meta": ckpt.meta.to_json(),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()},
        "splits": json.dumps(ckpt.splits, ensure_ascii=False),
        "history": json.dumps(ckpt.history),
    }
    with atomic_path(path, force=force) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise ModelFileError(f"{path}: not a nametool checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a nametool checkpoint")
    meta = ModelMeta.from_json(payload["meta"])
    model = NameMLP(len(meta.vocab), meta.model)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (RuntimeError, KeyError) as exc:
        raise ModelFileError(f"{path}: weights do not match the stored model config ({exc})") from None
    model.eval()
    return Checkpoint(meta, model, json.loads(payload["splits"]), json.loads(payload["history"]))


def newest_checkpoint(runs_dir: Path) -> Path:
    found = sorted(Path(runs_dir).glob("*/model.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ModelFileError(f"no checkpoint under {runs_dir}/ (run 'nametool train' or pass --checkpoint)")
    return found[-1]
