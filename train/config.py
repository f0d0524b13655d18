"""Training defaults, torch-free so the CLI can show them without importing torch.

Chosen from a sweep on the default dataset on a 2-core CPU (see README): the
default run trains in well under a minute and clearly beats a bigram model.
The lecture's configuration is ``--context-size 3 --embed-dim 10 --hidden 200``.
"""

from __future__ import annotations

from dataclasses import dataclass

from nametool.runtime.schema import ModelConfig

DEFAULT_MODEL = ModelConfig(context_size=8, embed_dim=32, hidden=(384,))


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 8000
    batch_size: int = 256
    lr: float = 2e-3  # peak: linear warm-up, then cosine decay to zero
    weight_decay: float = 0.01
    warmup: int = 200
    eval_every: int = 500
    seed: int = 42
