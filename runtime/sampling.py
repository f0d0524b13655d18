"""The one sampler: logits in, names out, with an injected random generator.

The runtime feeds it onnxruntime logits; the PyTorch reference path feeds it
torch logits. Both draw the same uniforms from the same ``numpy.random.Generator``,
so the same seed gives the same names on both sides at any temperature.

Randomness is laid out as one uniform per (name, position): name ``i`` reads row
``i`` of a ``(count, max_len)`` matrix drawn chunk by chunk in order. A
Generator fills consecutive draws from one stream, so the names do not depend on
how many are run through the model at once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nametool.runtime.errors import RequestError
from nametool.runtime.schema import Vocab

LogitsFn = Callable[[np.ndarray], np.ndarray]  # (batch, context_size) int64 -> (batch, vocab) float


def next_char_probs(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` per row; temperature 0 puts all mass on the argmax."""
    logits = np.asarray(logits, dtype=np.float64)  # (batch, vocab)
    if temperature == 0:
        probs = np.zeros_like(logits)
        probs[np.arange(len(logits)), logits.argmax(axis=1)] = 1.0
        return probs
    scaled = logits / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    np.exp(scaled, out=scaled)
    scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled


def sample_ids(probs: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: for each row, the first id whose cumulative probability exceeds u."""
    cdf = np.cumsum(probs, axis=1)  # (batch, vocab)
    ids = (cdf <= uniforms[:, None] * cdf[:, -1:]).sum(axis=1)
    return np.minimum(ids, probs.shape[1] - 1)


def check_request(count: int, temperature: float, min_len: int, max_len: int) -> None:
    if count < 0:
        raise RequestError(f"count {count} is negative")
    if not temperature >= 0 or not np.isfinite(temperature):
        raise RequestError(f"temperature {temperature} must be a finite number >= 0")
    if min_len < 1:
        raise RequestError(f"min_len {min_len} must be at least 1")
    if max_len < min_len:
        raise RequestError(f"max_len {max_len} is below min_len {min_len}")


def sample_names(
    logits_fn: LogitsFn,
    vocab: Vocab,
    context_size: int,
    count: int,
    *,
    rng: np.random.Generator,
    temperature: float = 1.0,
    min_len: int = 1,
    max_len: int = 32,
    batch_size: int = 1024,
) -> list[str]:
    """Sample ``count`` names; every name has ``min_len`` to ``max_len`` characters.

    The end token is masked while a name is shorter than ``min_len`` and forced
    once it reaches ``max_len``, so generation always ends.
    """
    check_request(count, temperature, min_len, max_len)
    if batch_size < 1:
        raise RequestError(f"batch size {batch_size} must be at least 1")
    names: list[str] = []
    for start in range(0, count, batch_size):
        rows = min(batch_size, count - start)
        uniforms = rng.random((rows, max_len))  # one draw per (name, position)
        names.extend(
            _sample_chunk(logits_fn, vocab, context_size, uniforms,
                          temperature=temperature, min_len=min_len, max_len=max_len)
        )
    return names


def _sample_chunk(logits_fn, vocab, context_size, uniforms, *, temperature, min_len, max_len):
    rows = len(uniforms)
    end = vocab.end_id
    context = np.full((rows, context_size), end, dtype=np.int64)  # left-padded with the end token
    out = np.full((rows, max_len), end, dtype=np.int64)
    active = np.arange(rows)
    for pos in range(max_len):  # a name still going at max_len ends there: the end is forced
        logits = np.array(logits_fn(context[active]), dtype=np.float64)  # (active, vocab)
        if pos < min_len:
            logits[:, end] = -np.inf
        ids = sample_ids(next_char_probs(logits, temperature), uniforms[active, pos])
        done = ids == end
        keep = active[~done]
        out[keep, pos] = ids[~done]
        context[keep] = np.concatenate([context[keep, 1:], ids[~done, None]], axis=1)
        active = keep
        if not len(active):
            break
    itos = vocab.itos()
    return ["".join(itos[i] for i in row if i != end) for row in out]
