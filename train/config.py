"""Training defaults, torch-free so the CLI can show them without importing torch.

Chosen from the sweep in docs/sweep.md (default dataset, 2-core CPU). The
lecture's configuration is ``--context-size 3 --embed-dim 10 --hidden 200 --members 1``;
models/README.md has the training settings of the bundled lecture model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nametool.runtime.schema import ModelConfig

# The lecture's assumptions define the default dataset: names of 5 to 9 letters.
DEFAULT_MIN_LEN, DEFAULT_MAX_LEN = 5, 9

DEFAULT_CONFIG = ModelConfig(context_size=10, embed_dim=32, hidden=(384,), members=3)
LECTURE_CONFIG = ModelConfig(context_size=3, embed_dim=10, hidden=(200,))


PRECISIONS = ("auto", "fp32", "bf16")

# Without --steps, a run takes AUTO_PASSES passes over its training windows, at most MAX_AUTO_STEPS
# steps: 3,000 on the bundled names (166,000 windows). A fixed 3,000 overfitted small files: on
# 9,208 Japanese names (33,000 windows) the best validation loss came at step 500 of 3,000, and
# the run lost to makemore's MLP (test 2.4817 against 2.4384); 800 steps gave 2.4202 (docs/sweep.md).
AUTO_PASSES, MAX_AUTO_STEPS = 25, 3000


def auto_steps(train_windows: int, batch_size: int) -> int:
    return max(1, min(MAX_AUTO_STEPS, math.ceil(AUTO_PASSES * train_windows / batch_size)))


@dataclass(frozen=True)
class TrainConfig:
    steps: int = MAX_AUTO_STEPS  # the CLI's default is auto_steps (the same on the bundled names)
    batch_size: int = 1024
    lr: float = 5e-3  # peak: linear warm-up, then cosine decay to zero
    weight_decay: float = 0.1
    warmup: int = 200
    dropout: float = 0.0
    eval_every: int = 500
    patience: int | None = None  # evaluations without a better val loss before stopping early
    seed: int = 42
    device: str = "cpu"
    # Of the training forward pass ("bf16": autocast, weights and evaluation stay fp32).
    # "auto" is bf16 on CPUs with AMX bf16 matrix units, where the default trained about
    # 1.4 times as fast as in fp32 for the same test loss (docs/sweep.md), for models large
    # enough to gain (training.BF16_MIN_MACS), and fp32 elsewhere; a run records what it
    # resolved to.
    precision: str = "auto"
    time_budget: float | None = None  # seconds asked for with --time-budget; steps were set from it
    # Distillation: a checkpoint trained on the same split whose next-character distributions
    # the run fits besides the data (--teacher), with this weight (the data's: 1 - distill).
    teacher: str | None = None
    teacher_sha256: str | None = None
    distill: float = 0.5

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if not 0 <= self.distill <= 1:
            raise ValueError(f"distill {self.distill} is outside [0, 1]")
