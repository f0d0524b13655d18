"""Checkpoints: the best weights, the one schema, the data split and the state to resume, in one file.

The file is a ``torch.save`` of plain containers (tensors, strings, numbers) and is
read back with ``torch.load(weights_only=True)``, which refuses to unpickle
arbitrary objects: loading a checkpoint never runs code from it. Writes are atomic.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from nametool.runtime.atomic import atomic_path
from nametool.runtime.errors import ModelFileError, NametoolError
from nametool.runtime.schema import ModelMeta, check_types
from nametool.train.config import TrainConfig
from nametool.train.model import CharModel, build_model

@dataclass
class LoopState:
    """Everything needed to continue a run: saved in the checkpoint as plain tensors and numbers."""

    step: int = 0
    optimizer: dict | None = None
    batch_rng: torch.Tensor | None = None  # torch.Generator state for batch sampling
    torch_rng: torch.Tensor | None = None  # torch's global state (dropout)
    smoothed: float | None = None
    best_val: float = math.inf
    best_weights: dict | None = None
    last_weights: dict | None = None  # where a resumed run continues from
    bad_evals: int = 0
    history: dict[str, list[float]] = field(default_factory=lambda: {"step": [], "train_loss": [], "val_loss": []})
    seconds: float = 0.0


FORMAT = "nametool-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    meta: ModelMeta
    model: CharModel  # with the best weights seen on val
    splits: dict[str, list[str]]  # train / val / test names
    train_config: TrainConfig
    loop: LoopState  # history, and what --resume continues from

    @property
    def history(self) -> dict[str, list[float]]:
        return self.loop.history


def save_checkpoint(path: Path, ckpt: Checkpoint, *, force: bool = False) -> None:
    """Write ``ckpt`` atomically; weights holding NaN or inf (a diverged run) are refused, not saved."""
    if not _finite(ckpt.model.state_dict()):
        raise NametoolError(f"{path}: not saved: the weights hold NaN or inf (training diverged; "
                            "try a lower --lr or --weight-decay)")
    loop = ckpt.loop
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": ckpt.meta.to_json(),
        "state_dict": {k: v.detach().cpu() for k, v in ckpt.model.state_dict().items()},
        "splits": json.dumps(ckpt.splits, ensure_ascii=False),
        "train_config": json.dumps(asdict(ckpt.train_config)),
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
    with atomic_path(path, force=force) as tmp, open(tmp, "wb") as file:
        writer = _Writer(file)
        try:
            torch.save(payload, writer)
        except RuntimeError:
            if writer.error is not None:  # a full disk: raise the OSError torch turned into an opaque message
                raise writer.error from None
            raise


class _Writer:
    """torch.save's target: a file whose write errors are kept, to report them by their cause."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def load_checkpoint(path: Path) -> Checkpoint:
    """Read a checkpoint back; anything foreign, damaged or newer is a one-line ModelFileError."""
    path = Path(path)
    payload = _read_payload(path)
    try:
        meta = ModelMeta.from_json(payload["meta"])
    except ModelFileError as exc:  # e.g. a schema version this nametool does not read
        raise ModelFileError(f"{path}: {exc}") from None
    except (KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: damaged checkpoint (metadata: {type(exc).__name__})") from None
    try:
        return _from_payload(payload, meta)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:120]  # one line: torch's state-dict errors span several
        raise ModelFileError(f"{path}: damaged checkpoint ({type(exc).__name__}: {detail})") from None


def _read_payload(path: Path) -> dict:
    """The saved containers, through ``weights_only``: a pickled Python object is refused unrun."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such checkpoint file")
    if not path.is_file():
        raise ModelFileError(f"{path}: is not a file")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols: the error says enough
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found:  # weights_only met a reference to Python code: refused before anything runs
            raise ModelFileError(f"{path}: refused: it holds a pickled Python object ({found.group(1)}) that "
                                 "could run code when loaded; nametool reads only tensors and plain values") from None
        raise ModelFileError(f"{path}: not a nametool checkpoint (UnpicklingError)") from None
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise ModelFileError(f"{path}: not a nametool checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a nametool checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: checkpoint format version {payload.get('format_version')!r} is not one "
                             f"this nametool reads ({FORMAT_VERSION}); retrain or use a matching nametool")
    return payload


def _from_payload(payload: dict, meta: ModelMeta) -> Checkpoint:
    train_config = _train_config(json.loads(payload["train_config"]))
    model = build_model(len(meta.vocab), meta.model, dropout=train_config.dropout)  # as it trains on resume
    model.load_state_dict(payload["state_dict"], strict=True)
    resume = payload["resume"]
    loop = LoopState(**json.loads(resume["numbers"]), history=json.loads(payload["history"]),
                     optimizer=resume["optimizer"], batch_rng=resume["batch_rng"],
                     torch_rng=resume["torch_rng"], last_weights=resume["last_weights"],
                     best_weights=resume["best_weights"])
    splits = json.loads(payload["splits"])
    if not _finite(model.state_dict()):
        raise ModelFileError("the weights hold NaN or inf; refusing to use them")
    model.eval()
    return Checkpoint(meta, model, splits, train_config, loop)


def _finite(state_dict: dict) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state_dict.values() if t.is_floating_point())


def _train_config(saved: dict) -> TrainConfig:
    """The saved settings, each checked against its annotation: a resumed run trusts them."""
    saved = {"precision": "fp32", **saved}  # checkpoints from before --precision trained in fp32
    values = {f.name: saved[f.name] for f in fields(TrainConfig) if f.name in saved}
    check_types(TrainConfig, values, "train_config")
    return TrainConfig(**values)


def newest_checkpoint(runs_dir: Path) -> Path:
    found = sorted(Path(runs_dir).glob("*/model.pt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise ModelFileError(f"no checkpoint under {runs_dir}/ (run 'nametool train' or pass --checkpoint)")
    return found[-1]
