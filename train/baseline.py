"""Count-model baselines the MLP has to beat, on the same split."""

from __future__ import annotations

import numpy as np

from nametool.runtime.schema import Vocab
from nametool.train.data import build_windows


def bigram_loss(train_names, eval_names, vocab: Vocab, smoothing: float = 1.0) -> float:
    """Nats per character of an add-``smoothing`` bigram count model fitted on ``train_names``."""
    v = len(vocab)
    ctx, tgt = build_windows(train_names, vocab, 1)
    counts = np.full((v, v), smoothing)
    np.add.at(counts, (ctx[:, 0], tgt), 1)
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    ctx, tgt = build_windows(eval_names, vocab, 1)
    return float(-logp[ctx[:, 0], tgt].mean())
