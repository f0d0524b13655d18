"""The PyTorch reference path: torch's logits through the runtime's own sampler.

For the same seed and options this gives exactly the names ``nametool-run
generate`` gives from the exported file; the tests hold the two together.
"""

from __future__ import annotations

import numpy as np
import torch

from nametool.runtime import generation
from nametool.train.checkpoint import Checkpoint


def torch_logits_fn(ckpt: Checkpoint) -> generation.LogitsFn:
    model = ckpt.model.eval()

    @torch.no_grad()
    def logits(contexts: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(np.ascontiguousarray(contexts, dtype=np.int64))).numpy()

    return logits


def sample_with_torch(ckpt: Checkpoint, request: generation.Request, seed: int | None) -> list[str]:
    return generation.generate(torch_logits_fn(ckpt), ckpt.meta, request, generation.make_rng(seed))
