"""(context, next id) windows of names, and the log-probability a model gives each target.

Shared by training, evaluation and the runtime's ``score``, so a name is cut into
windows one way everywhere. numpy only.
"""

from __future__ import annotations

import numpy as np

from nametool.runtime.errors import DataError
from nametool.runtime.sampling import log_softmax
from nametool.runtime.schema import Vocab


def build_windows(names, vocab: Vocab, context_size: int) -> tuple[np.ndarray, np.ndarray]:
    """All (context, next id) training pairs: ``aabid`` gives ``... -> a`` up to ``bid -> .``.

    Returns contexts ``(windows, context_size)`` and targets ``(windows,)``, both int64.
    Vectorised: the names become one id sequence, each left-padded with
    ``context_size`` end ids and closed by one, and the windows are views into it.
    """
    end = vocab.end_id
    lengths = np.fromiter((len(name) for name in names), dtype=np.int64, count=len(names))
    ids = _char_ids("".join(names), vocab)
    spans = lengths + context_size + 1  # each name's stretch of the sequence
    starts = np.cumsum(spans) - spans
    seq = np.full(int(spans.sum()), end, dtype=np.int64)
    name_of_char = np.repeat(np.arange(len(names)), lengths)
    offset_in_name = np.arange(len(ids)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    seq[starts[name_of_char] + context_size + offset_in_name] = ids
    # targets sit at every position after a name's padding: its letters, then its end
    target_pos = np.repeat(starts + context_size, lengths + 1) + (
        np.arange(int((lengths + 1).sum())) - np.repeat(np.cumsum(lengths + 1) - (lengths + 1), lengths + 1))
    windows = np.lib.stride_tricks.sliding_window_view(seq, context_size)  # windows[j] = seq[j : j + c]
    return np.ascontiguousarray(windows[target_pos - context_size]), seq[target_pos]


def _char_ids(text: str, vocab: Vocab) -> np.ndarray:
    """Ids of every character of ``text`` (all in the vocabulary), without a Python loop per character."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    table_codes = np.array([ord(c) for c in vocab.itos()], dtype=np.uint32)
    order = np.argsort(table_codes)
    found = np.minimum(np.searchsorted(table_codes[order], codes), len(order) - 1)
    if not np.array_equal(table_codes[order][found], codes):
        raise DataError("names hold characters outside the vocabulary")
    return order[found].astype(np.int64)


def pick_targets(logp: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``logp[i, targets[i]]`` of a ``(windows, vocab)`` log-probability table: each window's own loss."""
    return logp[np.arange(len(logp)), targets]


def target_logprobs(logits_fn, contexts: np.ndarray, targets: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """log P(target | context) under ``logits_fn`` for every window, in chunks of ``chunk`` windows."""
    parts = []
    for start in range(0, len(targets), chunk):
        logp = log_softmax(logits_fn(contexts[start:start + chunk]))  # (chunk, vocab)
        parts.append(pick_targets(logp, targets[start:start + chunk]))
    return np.concatenate(parts) if parts else np.zeros(0)
