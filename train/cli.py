"""``nametool``: train a name model and export it. torch is imported only inside commands."""

from __future__ import annotations

import contextlib
from dataclasses import replace
import datetime as dt
import math
import signal
import sys
from pathlib import Path

import click

from nametool.runtime.atomic import check_writable
from nametool.runtime.cli import SEED, user_errors
from nametool.runtime.schema import END_TOKEN, MAX_MEMBERS, NORMS
from nametool.train import commands
from nametool.train.commands import RUNS_DIR, require_torch
from nametool.train.config import (AUTO_PASSES, DEFAULT_CONFIG, DEFAULT_MAX_LEN, DEFAULT_MIN_LEN, MAX_AUTO_STEPS,
                                   PRECISIONS, TrainConfig, auto_steps)


class CommandsByName(click.Group):
    """A group that also offers commands of packages it must not import (STYLE: click's lazily
    loaded commands): ``export`` lives in nametool.export, which imports this package."""

    LAZY = {"export": ("nametool.export.cli", "export")}

    def list_commands(self, ctx) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx, name: str):
        if name in self.LAZY:
            import importlib

            module, attribute = self.LAZY[name]
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)


@click.group(cls=CommandsByName, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nametool")
def main() -> None:
    """Train a character-level name model (PyTorch) and export it to ONNX."""


def _finite(ctx, param, value: float) -> float:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


def _hidden_sizes(ctx, param, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in value.replace(",", " ").split())
    except ValueError:
        raise click.BadParameter(f"{value!r}: give layer sizes as integers, e.g. '200' or '256,256'") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: need one or more positive layer sizes")
    return sizes


@main.command()
@click.option("--data", type=click.Path(dir_okay=True), default=None,
              help="Names file, one per line, UTF-8. Default: the bundled Indian first names.")
@click.option("--min-len", type=click.IntRange(min=1), default=None,
              help=f"Drop shorter names. Default: {DEFAULT_MIN_LEN} on the bundled data, none on --data.")
@click.option("--max-len", type=click.IntRange(min=1), default=None,
              help=f"Drop longer names. Default: {DEFAULT_MAX_LEN} on the bundled data, none on --data.")
@click.option("--end-token", default=END_TOKEN, show_default=True, help="The one character that ends a name.")
@click.option("--context-size", type=click.IntRange(min=1), default=DEFAULT_CONFIG.context_size,
              show_default=True, help="Characters of context the model sees.")
@click.option("--embed-dim", type=click.IntRange(min=1), default=DEFAULT_CONFIG.embed_dim, show_default=True,
              help="Embedding dimensions per character.")
@click.option("--hidden", default=",".join(map(str, DEFAULT_CONFIG.hidden)), show_default=True,
              callback=_hidden_sizes, help="Hidden layer sizes, comma-separated (tanh after each).")
@click.option("--norm", type=click.Choice(NORMS), default=DEFAULT_CONFIG.norm, show_default=True,
              help="'layer': LayerNorm before each tanh.")
@click.option("--members", type=click.IntRange(1, MAX_MEMBERS), default=DEFAULT_CONFIG.members, show_default=True,
              help="MLPs trained side by side whose predictions are averaged (1: a single MLP).")
@click.option("--dropout", type=click.FloatRange(min=0, max=1, max_open=True), default=TrainConfig.dropout,
              show_default=True, callback=_finite, help="Dropout after each hidden layer (training only).")
@click.option("--steps", type=click.IntRange(min=1), default=None,
              help=f"Optimisation steps. Default: {AUTO_PASSES} passes over the training windows, at most "
                   f"{MAX_AUTO_STEPS:,} (the bundled names get {MAX_AUTO_STEPS:,}).")
@click.option("--batch-size", type=click.IntRange(1, 2**20), default=TrainConfig.batch_size, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=TrainConfig.lr, show_default=True,
              callback=_finite,
              help="Peak learning rate: linear warm-up, then cosine decay to zero.")
@click.option("--warmup", type=click.IntRange(min=0), default=TrainConfig.warmup, show_default=True,
              help="Warm-up steps (at most a tenth of --steps).")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=TrainConfig.weight_decay,
              show_default=True, callback=_finite, help="AdamW weight decay.")
@click.option("--eval-every", type=click.IntRange(min=1), default=TrainConfig.eval_every, show_default=True,
              help="Steps between val evaluations (and checkpoint saves).")
@click.option("--patience", type=click.IntRange(min=1), default=None,
              help="Stop after this many evaluations without a better val loss.")
@click.option("--seed", type=SEED, default=TrainConfig.seed, show_default=True,
              help="Seeds the split, the init, dropout and the batches.")
@click.option("--device", default="cpu", show_default=True, help="'cpu', or 'cuda' where available.")
@click.option("--precision", type=click.Choice(PRECISIONS), default=TrainConfig.precision, show_default=True,
              help="Of the training forward pass. 'auto': bf16 on CPUs with AMX for models of at least "
                   "50 M multiply-adds a step (the default: 409 M), else fp32. "
                   "Weights, evaluation and export stay fp32.")
@click.option("--time-budget", type=click.FloatRange(min=0, min_open=True), default=None, metavar="SECONDS",
              help="Train for about this long: a few steps are timed first and --steps is set from them "
                   "(said, and recorded in the checkpoint). The same seed and budget can give different "
                   "step counts, so different models, on different CPUs.")
@click.option("--teacher", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CHECKPOINT",
              help="Distil: also fit this checkpoint's next-character distributions (an ensemble trained "
                   "on the same data, split and seed), e.g. into one member that generates faster.")
@click.option("--distill", type=click.FloatRange(0, 1), default=TrainConfig.distill, show_default=True,
              help="With --teacher: the weight of the teacher's distributions in the loss (the data's: 1 - this).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint path. Default: runs/<time>/model.pt")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--resume", type=click.Path(dir_okay=False), default=None,
              help="Continue the run saved in this checkpoint (its own settings; other options ignored).")
@user_errors
def train(data, min_len, max_len, end_token, out, force, resume, time_budget, **settings):
    """Train the MLP and write a checkpoint (weights, config, vocabulary and split in one file).

    Ctrl-C stops at the next step, saves the best weights so far and the state
    to continue with --resume.
    """
    require_torch()
    from nametool.runtime.memory import keep_freed_memory
    from nametool.train.data import load_names
    from nametool.train.training import run_training

    _check_device(settings["device"])
    keep_freed_memory()  # each step's buffers reused by the next (runtime/memory.py)
    if resume:
        _resume(Path(resume))
        return
    if len(end_token) != 1:
        raise click.BadParameter(f"{end_token!r} must be exactly one character", param_hint="--end-token")
    if data is None:
        min_len = DEFAULT_MIN_LEN if min_len is None else min_len
        max_len = DEFAULT_MAX_LEN if max_len is None else max_len
    if min_len is not None and max_len is not None and min_len > max_len:
        raise click.BadParameter(f"{min_len} is above --max-len {max_len}", param_hint="--min-len")
    if out is not None:
        check_writable(Path(out), force)  # before minutes of training
    names = load_names(data, min_len=min_len, max_len=max_len, end_token=end_token)
    click.echo(names.report(), err=True)
    if time_budget is not None:
        settings = {**settings, "steps": _budget_steps(names, settings, end_token, time_budget)}
    elif settings["steps"] is None:
        settings = {**settings, "steps": _auto_steps(names, settings)}
    config, train_config = _configs(settings)
    train_config = replace(train_config, time_budget=time_budget)
    out = Path(out) if out else _new_run_path()
    with _progress_bar(train_config.steps) as (progress, stop):
        result = run_training(names, config, train_config, out, end_token=end_token, progress=progress,
                              should_stop=stop, force=True)
    _report(result)


def _configs(settings: dict):
    """The model's shape and the training settings from the options named after their fields."""
    from dataclasses import fields

    from nametool.runtime.schema import ModelConfig

    steps, warmup, eval_every = settings["steps"], settings["warmup"], settings["eval_every"]
    settings = {**settings,
                "warmup": _shortened("--warmup", warmup, min(warmup, steps // 10), "at most a tenth of --steps"),
                "eval_every": _shortened("--eval-every", eval_every, min(eval_every, steps), "at most --steps")}
    model_fields = {f.name for f in fields(ModelConfig)}
    config = ModelConfig(**{k: v for k, v in settings.items() if k in model_fields})
    return config, TrainConfig(**{k: v for k, v in settings.items() if k not in model_fields})


def _auto_steps(names, settings: dict) -> int:
    from nametool.train.data import split_names

    windows = sum(len(name) + 1 for name in split_names(names.names, settings["seed"])[0])
    steps = auto_steps(windows, settings["batch_size"])
    click.echo(f"steps: {steps:,} ({AUTO_PASSES} passes over {windows:,} training windows at batch "
               f"{settings['batch_size']:,}, at most {MAX_AUTO_STEPS:,}; --steps to choose)", err=True)
    return steps


def _budget_steps(names, settings: dict, end_token: str, budget: float) -> int:
    """Steps that fit ``budget`` seconds here, evaluations and saves included."""
    from nametool.train.training import measure_step_seconds

    config, train_config = _configs({**settings, "steps": settings["steps"] or TrainConfig.steps})
    per_step, per_eval = measure_step_seconds(names, config, train_config, end_token)
    steps = max(1, int(budget / (per_step + per_eval / train_config.eval_every)))
    if steps < train_config.eval_every:  # one evaluation at the end: give it its share
        steps = max(1, int((budget - per_eval) / per_step))
    click.echo(f"time budget {budget:g} s: measured {per_step * 1e3:.2f} ms a step and {per_eval * 1e3:.0f} ms "
               f"an evaluation here; training {steps:,} steps (the same seed and budget can give other step "
               "counts on other CPUs)", err=True)
    return steps


def _resume(path: Path) -> None:
    from nametool.train.checkpoint import load_checkpoint
    from nametool.train.training import resume_training

    ckpt = load_checkpoint(path)
    with _progress_bar(ckpt.train_config.steps) as (progress, stop):
        result = resume_training(path, progress=progress, should_stop=stop, checkpoint=ckpt)
    _report(result)


def _check_device(device: str) -> None:
    if device == "cpu":
        return
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise click.BadParameter(f"{device!r}: no CUDA device here; use --device cpu", param_hint="--device")
    if not device.startswith("cuda"):
        raise click.BadParameter(f"{device!r}: expected 'cpu' or 'cuda'", param_hint="--device")


@contextlib.contextmanager
def _progress_bar(steps: int):
    """A progress bar on stderr, and a Ctrl-C that asks the loop to stop at the next step.

    A second Ctrl-C interrupts at once.
    """
    stop = {"asked": False}

    def on_sigint(signum, frame):
        stop["asked"] = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None
    val = {"last": None}
    try:
        with click.progressbar(length=steps, label="training", file=sys.stderr,
                               item_show_func=lambda text: text) as bar:

            def progress(step: int, train_loss: float, val_loss: float | None) -> None:
                if val_loss is not None:
                    val["last"] = val_loss
                if step % 50 == 0 or val_loss is not None:
                    shown = "-" if val["last"] is None else f"{val['last']:.4f}"
                    bar.update(max(0, step - bar.pos), f"step {step} train {train_loss:.4f} val {shown}")

            yield progress, lambda: stop["asked"]
    finally:
        if previous is not None:
            # after a Ctrl-C the process is on its way out: a late second one must not
            # interrupt the interpreter's own shutdown (torch's finalizers) with a traceback
            signal.signal(signal.SIGINT, signal.SIG_IGN if stop["asked"] else previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _report(result) -> None:
    losses, bigram = result.losses, result.bigram
    if result.stopped == "interrupted":
        click.echo(f"interrupted at step {result.checkpoint.loop.step}; saved the best weights so far. "
                   f"Continue with: nametool train --resume {result.path}")
    elif result.stopped == "early stop":
        click.echo(f"stopped early at step {result.checkpoint.loop.step}: val loss no longer improving")
    click.echo(f"trained in {result.seconds:.1f}s; loss in nats/char (bigram count model on the same split):")
    for split in ("train", "val", "test"):
        click.echo(f"  {split:5s} {losses[split]:.4f}   (bigram {bigram[split]:.4f})")
    click.echo(f"checkpoint: {result.path}")
    if result.stopped == "interrupted":
        sys.exit(130)


def _shortened(name: str, asked: int, used: int, why: str) -> int:
    if used != asked:
        click.echo(f"note: {name} {asked} shortened to {used} ({why})", err=True)
    return used


def _new_run_path() -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run = RUNS_DIR / stamp
    suffix = 1
    while run.exists():
        suffix += 1
        run = RUNS_DIR / f"{stamp}-{suffix}"
    try:
        run.mkdir(parents=True)
    except OSError as exc:
        raise click.ClickException(f"{run}: cannot create the run folder ({exc.strerror or exc}); "
                                   "pass --out elsewhere") from None
    return run / "model.pt"


main.add_command(commands.sample)
main.add_command(commands.evaluate)
main.add_command(commands.plot)


if __name__ == "__main__":
    main()
