"""The training loop: AdamW, linear warm-up then cosine decay, minibatches of windows.

Every random choice comes from state the loop can save and restore (a batch
generator, torch's global generator for dropout), so a run resumed from its
saved state continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from nametool.train.config import TrainConfig
from nametool.train.model import CharModel


@dataclass
class Windows:
    """All (context, next id) pairs of one split as tensors."""

    contexts: torch.Tensor  # (windows, context_size) int64
    targets: torch.Tensor  # (windows,) int64

    @classmethod
    def from_numpy(cls, contexts: np.ndarray, targets: np.ndarray, device: str = "cpu") -> Windows:
        return cls(torch.from_numpy(contexts).to(device), torch.from_numpy(targets).to(device))


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


@dataclass(frozen=True)
class Outcome:
    state: LoopState
    stopped: str  # "finished", "early stop" or "interrupted"


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` is bf16 where the CPU multiplies bf16 matrices in hardware (AMX), else fp32."""
    if precision != "auto":
        return precision
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)  # private in torch 2.x: may vanish
    return "bf16" if device == "cpu" and amx() else "fp32"


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def mean_loss(model: CharModel, data: Windows, chunk: int = 65536) -> float:
    """Cross-entropy in nats per character over every window of a split."""
    was_training = model.training
    model.eval()
    total = 0.0
    for start in range(0, len(data.targets), chunk):
        logits = model(data.contexts[start:start + chunk])
        total += F.cross_entropy(logits, data.targets[start:start + chunk], reduction="sum").item()
    model.train(was_training)
    return total / len(data.targets)


Progress = Callable[[int, float, float | None], None]  # (step, train loss, val loss or None)
Hook = Callable[[LoopState], None]  # called after each evaluation, e.g. to save a checkpoint


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
    gen = torch.Generator(device=train.targets.device)
    gen.manual_seed(config.seed)
    device = train.targets.device.type
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                  fused=device in ("cpu", "cuda"))  # one kernel for all parameters
    bf16 = resolve_precision(config.precision, device) == "bf16"
    if state.optimizer is not None:
        model.load_state_dict(state.last_weights)
        optimizer.load_state_dict(state.optimizer)
        gen.set_state(state.batch_rng)
        torch.set_rng_state(state.torch_rng)
    else:
        torch.manual_seed(config.seed)
    model.train()
    stopped = "finished"
    started = time.perf_counter() - state.seconds
    while state.step < config.steps:
        if should_stop is not None and should_stop():
            stopped = "interrupted"
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(state.step, config)
        batch = torch.randint(len(train.targets), (config.batch_size,), generator=gen, device=gen.device)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            outputs = model.member_logits(train.contexts[batch])
        targets = train.targets[batch]  # each member fits the data on its own; their losses are averaged
        loss = sum(F.cross_entropy(out.float(), targets) for out in outputs) / len(outputs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        state.smoothed = value if state.smoothed is None else 0.95 * state.smoothed + 0.05 * value
        state.step += 1
        val_loss = None
        if state.step % config.eval_every == 0 or state.step == config.steps:
            val_loss = _evaluate(model, val, state, config)
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


def _evaluate(model: CharModel, val: Windows, state: LoopState, config: TrainConfig) -> float:
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
