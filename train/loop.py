"""The training loop: AdamW, linear warm-up then cosine decay, minibatches of windows."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from nametool.train.config import TrainConfig
from nametool.train.model import NameMLP


@dataclass
class Windows:
    """All (context, next id) pairs of one split as tensors."""

    contexts: torch.Tensor  # (windows, context_size) int64
    targets: torch.Tensor  # (windows,) int64

    @classmethod
    def from_numpy(cls, contexts: np.ndarray, targets: np.ndarray) -> Windows:
        return cls(torch.from_numpy(contexts), torch.from_numpy(targets))


def learning_rate(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def mean_loss(model: NameMLP, data: Windows, chunk: int = 65536) -> float:
    """Cross-entropy in nats per character over every window of a split."""
    model.eval()
    total = 0.0
    for start in range(0, len(data.targets), chunk):
        logits = model(data.contexts[start:start + chunk])
        total += F.cross_entropy(logits, data.targets[start:start + chunk], reduction="sum").item()
    model.train()
    return total / len(data.targets)


Progress = Callable[[int, float, float | None], None]  # (step, train loss, val loss or None)


def train_model(
    model: NameMLP, train: Windows, val: Windows, config: TrainConfig, progress: Progress | None = None
) -> tuple[dict[str, list[float]], float]:
    """Train in place. Returns the loss history and the wall time in seconds."""
    gen = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: dict[str, list[float]] = {"step": [], "train_loss": [], "val_loss": []}
    model.train()
    start = time.perf_counter()
    smoothed = None
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        batch = torch.randint(len(train.targets), (config.batch_size,), generator=gen)
        loss = F.cross_entropy(model(train.contexts[batch]), train.targets[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = loss.item()
        smoothed = value if smoothed is None else 0.95 * smoothed + 0.05 * value
        last = step == config.steps - 1
        val_loss = None
        if (step + 1) % config.eval_every == 0 or last:
            val_loss = mean_loss(model, val)
            history["step"].append(step + 1)
            history["train_loss"].append(smoothed)
            history["val_loss"].append(val_loss)
        if progress is not None:
            progress(step + 1, smoothed, val_loss)
    model.eval()
    return history, time.perf_counter() - start
