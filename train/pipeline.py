"""One training run, start to finish: data, split, model, loop, losses, checkpoint."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import torch

from nametool.runtime import __version__
from nametool.runtime.known import KnownNames
from nametool.runtime.schema import ModelConfig, ModelMeta, Provenance, SamplingDefaults
from nametool.train.baseline import bigram_loss
from nametool.train.checkpoint import Checkpoint, save_checkpoint
from nametool.train.data import NameSet, build_vocab, build_windows, data_notice, split_names
from nametool.train.config import TrainConfig
from nametool.train.loop import Progress, Windows, mean_loss, train_model
from nametool.train.model import NameMLP


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Checkpoint
    path: Path
    losses: dict[str, float]  # train / val / test, nats per character
    bigram: dict[str, float]  # the same for an add-one bigram count model
    seconds: float


def run_training(
    names: NameSet,
    config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    *,
    end_token: str = ".",
    progress: Progress | None = None,
    force: bool = False,
) -> TrainResult:
    torch.manual_seed(train_config.seed)
    vocab = build_vocab(names.names, end_token)
    splits = dict(zip(("train", "val", "test"), split_names(names.names, train_config.seed)))
    windows = {
        split: Windows.from_numpy(*build_windows(part, vocab, config.context_size))
        for split, part in splits.items()
    }
    model = NameMLP(len(vocab), config)
    history, seconds = train_model(model, windows["train"], windows["val"], train_config, progress)
    losses = {split: mean_loss(model, data) for split, data in windows.items()}
    bigram = {split: bigram_loss(splits["train"], part, vocab) for split, part in splits.items()}
    lengths = [len(name) for name in splits["train"]]
    meta = ModelMeta(
        vocab=vocab,
        model=config,
        sampling=SamplingDefaults(min_len=min(lengths), max_len=max(lengths)),
        provenance=Provenance(
            dataset=Path(names.source).name, dataset_sha256=names.sha256, name_count=len(names.names),
            seed=train_config.seed, steps=train_config.steps, nametool_version=__version__,
            train_loss=losses["train"], val_loss=losses["val"], test_loss=losses["test"],
            train_seconds=round(seconds, 2), torch_version=torch.__version__,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            data_notice=data_notice(names),
        ),
        known_names=KnownNames.from_names(names.names),
    )
    ckpt = Checkpoint(meta, model, splits, history)
    save_checkpoint(out, ckpt, force=force)
    return TrainResult(ckpt, out, losses, bigram, seconds)
