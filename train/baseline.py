"""Count-model baselines the MLP has to beat, fitted on the same split: unigram, add-k n-grams."""

from __future__ import annotations

import numpy as np

from nametool.runtime.schema import Vocab
from nametool.runtime.windows import build_windows

K_GRID = tuple(float(k) for k in np.logspace(-3, 1, 17))  # add-k values tried on val


def ngram_log_probs(train_names, vocab: Vocab, order: int, k: float) -> np.ndarray:
    """log P(next | previous ``order - 1`` ids) of an add-``k`` count model, indexed by flat context."""
    v = len(vocab)
    width = order - 1
    contexts, targets = build_windows(train_names, vocab, max(width, 1))
    flat = _flat(contexts, v) if width else np.zeros(len(targets), dtype=np.int64)
    counts = np.full((v ** width, v), k)
    np.add.at(counts, (flat, targets), 1)
    return np.log(counts / counts.sum(axis=1, keepdims=True))


def ngram_loss(train_names, eval_names, vocab: Vocab, order: int, k: float) -> float:
    """Nats per character on ``eval_names`` of an add-``k`` model of ``order`` (1 unigram, 2 bigram, ...)."""
    logp = ngram_log_probs(train_names, vocab, order, k)
    contexts, targets = build_windows(eval_names, vocab, max(order - 1, 1))
    flat = _flat(contexts, len(vocab)) if order > 1 else np.zeros(len(targets), dtype=np.int64)
    return float(-logp[flat, targets].mean())


def tuned_ngram(train_names, val_names, vocab: Vocab, order: int) -> float:
    """The add-k constant with the lowest val loss."""
    return min(K_GRID, key=lambda k: ngram_loss(train_names, val_names, vocab, order, k))


def bigram_loss(train_names, eval_names, vocab: Vocab, smoothing: float = 1.0) -> float:
    """Nats per character of an add-``smoothing`` bigram count model fitted on ``train_names``."""
    return ngram_loss(train_names, eval_names, vocab, 2, smoothing)


def _flat(contexts: np.ndarray, v: int) -> np.ndarray:
    """Context ids as one index in base ``v`` (the last ``width`` characters)."""
    flat = np.zeros(len(contexts), dtype=np.int64)
    for column in range(contexts.shape[1]):
        flat = flat * v + contexts[:, column]
    return flat
