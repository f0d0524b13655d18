"""One training run, start to finish: data, split, model, loop, losses, checkpoint; or its resumption."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from nametool.runtime import __version__
from nametool.runtime.atomic import refuse_existing
from nametool.runtime.known import KnownNames
from nametool.runtime.schema import ModelConfig, ModelMeta, Provenance, SamplingDefaults
from nametool.train.baseline import bigram_loss
from nametool.train.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from nametool.train.config import TrainConfig
from nametool.train.data import NameSet, build_vocab, data_notice, split_names
from nametool.runtime.windows import build_windows
from nametool.train.loop import LoopState, Progress, Windows, mean_loss, resolve_precision, train_model
from nametool.train.model import CharModel, build_model


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Checkpoint
    path: Path
    losses: dict[str, float]  # train / val / test, nats per character, best weights
    bigram: dict[str, float]  # the same for an add-one bigram count model
    seconds: float
    stopped: str  # "finished", "early stop" or "interrupted"


def run_training(
    names: NameSet,
    config: ModelConfig,
    train_config: TrainConfig,
    out: Path,
    *,
    end_token: str = ".",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    force: bool = False,
) -> TrainResult:
    refuse_existing(out, force)
    vocab = build_vocab(names.names, end_token)
    splits = dict(zip(("train", "val", "test"), split_names(names.names, train_config.seed)))
    lengths = [len(name) for name in splits["train"]]
    meta = ModelMeta(
        vocab=vocab,
        model=config,
        sampling=SamplingDefaults(min_len=min(lengths), max_len=max(lengths)),
        provenance=Provenance(
            dataset=Path(names.source).name, dataset_sha256=names.sha256, name_count=len(names.names),
            seed=train_config.seed, steps=train_config.steps, nametool_version=__version__,
            torch_version=torch.__version__, data_notice=data_notice(names),
        ),
        known_names=KnownNames.from_names(names.names),
    )
    torch.manual_seed(train_config.seed)  # the initial weights
    model = build_model(len(vocab), config, dropout=train_config.dropout)
    ckpt = Checkpoint(meta, model, splits, train_config, LoopState())
    return _run(ckpt, out, progress, should_stop)


def resume_training(
    path: Path, *, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
    checkpoint: Checkpoint | None = None,
) -> TrainResult:
    """Continue the run saved in ``path`` (or its ``checkpoint``, already loaded) and write the result back."""
    ckpt = load_checkpoint(path) if checkpoint is None else checkpoint
    return _run(ckpt, path, progress, should_stop)


def _run(ckpt: Checkpoint, out: Path, progress, should_stop) -> TrainResult:
    device = ckpt.train_config.device
    # what "auto" means here, recorded in every save (a resumed run keeps what it started with)
    precision = resolve_precision(ckpt.train_config.precision, torch.device(device).type)
    ckpt.train_config = replace(ckpt.train_config, precision=precision)
    model = ckpt.model.to(device)
    vocab, context_size = ckpt.meta.vocab, ckpt.meta.model.context_size
    windows = {split: Windows.from_numpy(*build_windows(part, vocab, context_size), device=device)
               for split, part in ckpt.splits.items()}

    def save(state: LoopState) -> None:  # after every evaluation: a killed run resumes from here
        save_checkpoint(out, _finished(ckpt, model, state, windows=None), force=True)

    outcome = train_model(model, windows["train"], windows["val"], ckpt.train_config, state=ckpt.loop,
                          progress=progress, after_eval=save, should_stop=should_stop)
    final = _finished(ckpt, model, outcome.state, windows)
    save_checkpoint(out, final, force=True)
    bigram = {split: bigram_loss(ckpt.splits["train"], part, vocab) for split, part in ckpt.splits.items()}
    prov = final.meta.provenance
    losses = {"train": prov.train_loss, "val": prov.val_loss, "test": prov.test_loss}
    return TrainResult(final, Path(out), losses, bigram, outcome.state.seconds, outcome.stopped)


def _finished(ckpt: Checkpoint, model: CharModel, state: LoopState, windows) -> Checkpoint:
    """The checkpoint as of ``state``: best weights, and losses when the splits are given."""
    with torch.random.fork_rng(devices=[]):  # a fresh model draws its init: not from the run's generator
        best = build_model(len(ckpt.meta.vocab), ckpt.meta.model)
    best.load_state_dict(state.best_weights or state.last_weights or model.state_dict())
    best.eval()
    changes = {"steps": state.step, "train_seconds": round(state.seconds, 2),
               "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if windows is not None:
        cpu = {split: Windows(w.contexts.cpu(), w.targets.cpu()) for split, w in windows.items()}
        changes.update({f"{split}_loss": mean_loss(best, data) for split, data in cpu.items()})
    meta = ckpt.meta.with_provenance(**changes)
    return replace(ckpt, meta=meta, model=best, loop=state)
