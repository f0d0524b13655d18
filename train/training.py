"""One training run, read top to bottom: data and split -> model -> the loop -> checkpoint.

``run_training`` starts a run and ``resume_training`` continues a saved one; both go
through ``_run``, which builds the windows, runs ``train_model`` (AdamW, linear warm-up
then cosine decay, minibatches of windows) and writes the checkpoint after every
evaluation and at the end. Every random choice comes from state the loop can save and
restore (a batch generator, torch's global generator for dropout), so a resumed run
continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from nametool.runtime import __version__
from nametool.runtime.atomic import refuse_existing
from nametool.runtime.known import KnownNames
from nametool.runtime.schema import END_TOKEN, ModelConfig, ModelMeta, Provenance, SamplingDefaults
from nametool.runtime.windows import build_windows
from nametool.train.baseline import bigram_loss
from nametool.train.checkpoint import Checkpoint, LoopState, load_checkpoint, save_checkpoint
from nametool.train.config import TrainConfig
from nametool.train.data import NameSet, build_vocab, data_notice, split_names
from nametool.train.distill import distill_loss, file_sha256, teacher_probs
from nametool.train.kernels import adamw_step
from nametool.train.model import CharModel, build_model

Progress = Callable[[int, float, float | None], None]  # (step, train loss, val loss or None)
Hook = Callable[[LoopState], None]  # called after each evaluation, e.g. to save a checkpoint


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
    end_token: str = END_TOKEN,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    force: bool = False,
) -> TrainResult:
    refuse_existing(out, force)
    if train_config.teacher is not None:  # an absolute path and the file's digest: resume checks both
        teacher = Path(train_config.teacher).resolve()
        train_config = replace(train_config, teacher=str(teacher),
                               teacher_sha256=file_sha256(teacher) if teacher.is_file() else None)
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
            teacher=None if train_config.teacher is None else Path(train_config.teacher).name,
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
    model = ckpt.model.to(device)
    # what "auto" means here, recorded in every save (a resumed run keeps what it started with)
    precision = _set_precision(model, ckpt.meta.model, ckpt.train_config, len(ckpt.meta.vocab))
    ckpt.train_config = replace(ckpt.train_config, precision=precision)
    vocab = ckpt.meta.vocab
    windows = _windows(ckpt.splits, vocab, ckpt.meta.model.context_size, device)
    config = ckpt.train_config
    if config.teacher is not None:
        soft = teacher_probs(config.teacher, config.teacher_sha256, vocab, ckpt.splits, windows["train"].contexts)
        windows["train"] = replace(windows["train"], soft=soft)

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


def _set_precision(model: CharModel, config: ModelConfig, train_config: TrainConfig, vocab_size: int) -> str:
    """Resolve ``auto`` for this device, and fold the first layer where that precision gains from it."""
    precision = resolve_precision(train_config.precision, torch.device(train_config.device).type,
                                  step_macs(model, train_config.batch_size))
    model.fold = fold_pays(precision, config, vocab_size)
    return precision


def _windows(splits: dict[str, list[str]], vocab, context_size: int, device: str) -> dict[str, Windows]:
    return {split: Windows.from_numpy(*build_windows(names, vocab, context_size), device=device)
            for split, names in splits.items()}


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


# -- the loop ------------------------------------------------------------------------------------

@dataclass
class Windows:
    """All (context, next id) pairs of one split as tensors."""

    contexts: torch.Tensor  # (windows, context_size) int64
    targets: torch.Tensor  # (windows,) int64
    soft: torch.Tensor | None = None  # (windows, vocab) float32: a teacher's distributions, when distilling

    @classmethod
    def from_numpy(cls, contexts: np.ndarray, targets: np.ndarray, device: str = "cpu") -> Windows:
        return cls(torch.from_numpy(contexts).to(device), torch.from_numpy(targets).to(device))


@dataclass(frozen=True)
class Outcome:
    state: LoopState
    stopped: str  # "finished", "early stop" or "interrupted"


def measure_step_seconds(names: NameSet, config: ModelConfig, train_config: TrainConfig,
                         end_token: str = END_TOKEN, steps: int = 20) -> tuple[float, float]:
    """(seconds per training step, seconds per evaluation and save) of this model on this machine.

    Runs a few real steps on a throwaway copy, inside ``fork_rng``: the run that follows draws
    exactly what it would have drawn without the measurement.
    """
    import io

    vocab = build_vocab(names.names, end_token)
    train_names, val_names, _ = split_names(names.names, train_config.seed)
    windows = _windows({"train": train_names, "val": val_names}, vocab, config.context_size, train_config.device)
    train, val = windows["train"], windows["val"]
    if train_config.teacher is not None:  # the teacher's table costs a lookup per step: time it too
        train = replace(train, soft=torch.full((len(train.targets), len(vocab)), 1 / len(vocab),
                                               device=train.targets.device))
    with torch.random.fork_rng(devices=[]):
        model = build_model(len(vocab), config, dropout=train_config.dropout).to(train_config.device)
        precision = _set_precision(model, config, train_config, len(vocab))
        probe, state = replace(train_config, precision=precision, steps=steps + 5), LoopState()
        optimizer, gen = _start(model, train, probe, state)
        bf16 = precision == "bf16"
        for _ in range(5):  # warm-up: first calls allocate and pick kernels
            _step(model, optimizer, gen, train, probe, state, bf16)
        started = time.perf_counter()
        for _ in range(steps):
            _step(model, optimizer, gen, train, probe, state, bf16)
        per_step = (time.perf_counter() - started) / steps
        started = time.perf_counter()
        mean_loss(model, val)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, io.BytesIO())
        per_eval = time.perf_counter() - started
    return per_step, per_eval


def fold_pays(precision: str, config: ModelConfig, vocab_size: int) -> bool:
    """Train the first layer folded (``NameMLP._folded_first_layer``: the same maths) where it measured
    faster: in fp32 with embeddings at least as wide as the vocabulary. bench/train_fold.py on the
    2-core Xeon, per step: the default's shape 1.58x faster folded in fp32 (1.99x with the AVX2
    instructions of CPUs without AVX-512: bench/train_time.py's proxy), but 0.65x in bf16 against
    the fused stack (AMX multiplies the plain form faster), and the lecture's 10-d shape 0.72x."""
    return precision == "fp32" and config.embed_dim >= vocab_size


# Below this many multiply-adds a step, ``auto`` stays fp32 even with AMX: bf16's casts and calls
# cost more than its products save. Per step on the 2-core Xeon (AMX), fp32 against bf16: the
# lecture's shape 1.22 against 1.49 ms (12 M), 10 x 32 -> 128 1.81 against 1.93 (45 M), three
# lecture members 2.82 either way (35 M); 10 x 32 -> 256 2.25 against 2.15 (91 M), 8 x 24 -> 300
# 2.48 against 2.06 (67 M), the default 7.54 against 4.87 (409 M). Measured on that CPU only.
BF16_MIN_MACS = 50_000_000


def step_macs(model: CharModel, batch_size: int) -> int:
    """Multiply-adds of the linear layers for one batch, every member's (the forward pass's work)."""
    return batch_size * sum(layer.weight.numel() for layer in model.modules() if isinstance(layer, torch.nn.Linear))


def resolve_precision(precision: str, device: str, macs: int | None = None) -> str:
    """``auto`` is bf16 where the CPU multiplies bf16 matrices in hardware (AMX) and the model's step
    (``macs``, from ``step_macs``; None counts as large) is big enough to gain from it, else fp32."""
    if precision != "auto":
        return precision
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)  # private in torch 2.x: may vanish
    large = macs is None or macs >= BF16_MIN_MACS
    return "bf16" if device == "cpu" and amx() and large else "fp32"


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


# Evaluation's windows per call, and from what first-layer width it folds (the same maths). fp32,
# on the 2-core Xeon, 20,531 random windows, with glibc's thresholds set and without: the default
# 36.3 / 28.9 ms folded in calls of 8,192 against 78.1 / 102.2 plain in calls of 65,536; 8 x 24
# -> 300 8.2 / 6.7 against 15.0 / 21.6; the lecture's (30 wide) 4.1 plain against 4.6 folded.
# Calls of 65,536 folded lost without the thresholds (75.8 ms for the default). Under the AVX2
# proxy (bench/train_time.py --isa avx2), the default 53 / 61 ms against 138 / 170, 8 x 24 -> 300
# 12.6 / 14.0 against 31.0 / 41.0, the lecture's 8.3 plain against 8.1 folded.
EVAL_ROWS, EVAL_FOLD_WIDTH = 8192, 64


def eval_folds(model: CharModel) -> bool:
    """Whether evaluation computes the first layer folded: from ``EVAL_FOLD_WIDTH`` inputs."""
    first = next(layer for layer in model.modules() if isinstance(layer, torch.nn.Linear))
    return first.in_features >= EVAL_FOLD_WIDTH


@torch.no_grad()
def mean_loss(model: CharModel, data: Windows, chunk: int = EVAL_ROWS) -> float:
    """Cross-entropy in nats per character over every window of a split, in fp32 (the first layer
    folded where ``eval_folds`` says so); the model's own mode and fold are left as they were."""
    was_training, was_folded = model.training, model.fold
    try:
        model.eval()
        model.fold = eval_folds(model)
        total = 0.0
        for start in range(0, len(data.targets), chunk):
            logits = model(data.contexts[start:start + chunk])
            total += F.cross_entropy(logits, data.targets[start:start + chunk], reduction="sum").item()
    finally:
        model.train(was_training)
        model.fold = was_folded
    return total / len(data.targets)


def train_model(
    model: CharModel,
    train: Windows,
    val: Windows,
    config: TrainConfig,
    *,
    state: LoopState | None = None,
    progress: Progress | None = None,
    after_eval: Hook | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Outcome:
    """Train in place from ``state`` (a fresh run if None); the model ends with its best weights."""
    state = state or LoopState()
    optimizer, gen = _start(model, train, config, state)
    bf16 = resolve_precision(config.precision, train.targets.device.type, step_macs(model, config.batch_size)) == "bf16"
    started = time.perf_counter() - state.seconds
    stopped = "finished"
    while state.step < config.steps:
        if should_stop is not None and should_stop():
            stopped = "interrupted"
            break
        _step(model, optimizer, gen, train, config, state, bf16)
        val_loss = None
        if state.step % config.eval_every == 0 or state.step == config.steps:
            val_loss = _evaluate(model, val, state)
            state.seconds = time.perf_counter() - started
            _snapshot(state, model, optimizer, gen)
            if after_eval is not None:
                after_eval(state)
        if progress is not None:
            progress(state.step, state.smoothed, val_loss)
        if config.patience is not None and state.bad_evals >= config.patience:
            stopped = "early stop"
            break
    state.seconds = time.perf_counter() - started
    _snapshot(state, model, optimizer, gen)
    if state.best_weights is not None:
        model.load_state_dict(state.best_weights)
    model.eval()
    return Outcome(state, stopped)


def _start(model: CharModel, train: Windows, config: TrainConfig, state: LoopState):
    """The optimizer and the batch generator: fresh, or as ``state`` saved them."""
    gen = torch.Generator(device=train.targets.device)
    gen.manual_seed(config.seed)
    device = train.targets.device.type
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=device in ("cpu", "cuda"))  # one kernel for all parameters
    if state.optimizer is not None:  # a resumed run
        model.load_state_dict(state.last_weights)
        optimizer.load_state_dict(state.optimizer)
        gen.set_state(state.batch_rng)
        torch.set_rng_state(state.torch_rng)
    else:
        torch.manual_seed(config.seed)
    model.train()
    return optimizer, gen


def _step(model: CharModel, optimizer, gen: torch.Generator, train: Windows, config: TrainConfig,
          state: LoopState, bf16: bool) -> None:
    """One optimisation step on a random minibatch of windows."""
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(state.step, config)
    batch = torch.randint(len(train.targets), (config.batch_size,), generator=gen, device=gen.device)
    with torch.autocast(train.targets.device.type, dtype=torch.bfloat16, enabled=bf16):
        outputs = model.member_logits(train.contexts[batch])  # (members, batch, vocab)
    # Each member fits the data on its own; the loss is the mean of the members' means, taken in
    # one call over every member's rows (0.19 against 0.31 ms as one call a member, the default's
    # three members on the 2-core Xeon; the same gradients).
    members = len(outputs)
    logits, targets = outputs.float().flatten(0, 1), train.targets[batch].repeat(members)
    if train.soft is None:
        loss = F.cross_entropy(logits, targets)
    else:
        loss = distill_loss(logits, targets, train.soft[batch].repeat(members, 1), config.distill)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    adamw_step(optimizer)
    value = loss.item()
    state.smoothed = value if state.smoothed is None else 0.95 * state.smoothed + 0.05 * value
    state.step += 1


def _evaluate(model: CharModel, val: Windows, state: LoopState) -> float:
    val_loss = mean_loss(model, val)
    state.history["step"].append(state.step)
    state.history["train_loss"].append(state.smoothed)
    state.history["val_loss"].append(val_loss)
    if val_loss < state.best_val:
        state.best_val, state.bad_evals = val_loss, 0
        state.best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    else:
        state.bad_evals += 1
    return val_loss


def _snapshot(state: LoopState, model: CharModel, optimizer, gen: torch.Generator) -> None:
    state.last_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    state.optimizer = copy.deepcopy(optimizer.state_dict())
    state.batch_rng = gen.get_state()
    state.torch_rng = torch.get_rng_state()
