"""Training defaults, torch-free so the CLI can show them without importing torch.

Chosen from the sweep in docs/sweep.md (default dataset, 2-core CPU). The
lecture's configuration is ``--context-size 3 --embed-dim 10 --hidden 200``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nametool.runtime.schema import ModelConfig

DEFAULT_MODEL = ModelConfig(context_size=10, embed_dim=32, hidden=(512,))
LECTURE_MODEL = ModelConfig(context_size=3, embed_dim=10, hidden=(200,))


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 5000
    batch_size: int = 512
    lr: float = 3e-3  # peak: linear warm-up, then cosine decay to zero
    weight_decay: float = 0.1
    warmup: int = 200
    dropout: float = 0.0
    eval_every: int = 500
    patience: int | None = None  # evaluations without a better val loss before stopping early
    seed: int = 42
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)
