"""Names file -> clean names -> vocabulary -> (context, next char) windows -> split.

Pure Python and numpy: no torch here, so the data rules are testable anywhere.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from nametool.runtime.errors import DataError
from nametool.runtime.schema import Vocab
from nametool.runtime.text import normalise

DEFAULT_DATASET = "indian_names"
DEFAULT_END_TOKEN = "."
# The lecture's assumptions define the default dataset: names of 5 to 9 letters.
DEFAULT_MIN_LEN, DEFAULT_MAX_LEN = 5, 9
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class NameSet:
    """Clean, deduplicated names in file order, with where they came from and what was dropped."""

    names: tuple[str, ...]
    source: str
    sha256: str
    dropped: dict[str, int] = field(default_factory=dict)

    def report(self) -> str:
        parts = [f"{len(self.names)} names from {self.source}"]
        parts += [f"dropped {count} {reason}" for reason, count in self.dropped.items() if count]
        return "; ".join(parts)


def default_dataset_path() -> Path:
    return Path(str(resources.files("nametool.train").joinpath("data", f"{DEFAULT_DATASET}.txt")))


def load_names(
    path: str | Path | None = None,
    *,
    min_len: int | None = None,
    max_len: int | None = None,
    end_token: str = DEFAULT_END_TOKEN,
) -> NameSet:
    """Read one name per line (UTF-8). ``path=None`` is the bundled default dataset."""
    source = DEFAULT_DATASET if path is None else str(path)
    path = default_dataset_path() if path is None else Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such names file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a names file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    names, dropped = clean_names(text.splitlines(), min_len=min_len, max_len=max_len, end_token=end_token)
    if not names:
        raise DataError(f"{path}: no usable names ({_describe(dropped) or 'the file is empty'})")
    return NameSet(tuple(names), source, hashlib.sha256(raw).hexdigest(), dropped)


def data_notice(names: NameSet) -> str | None:
    """The credits that travel with a model: the bundled NOTICE for the default dataset."""
    if names.source != DEFAULT_DATASET:
        return None
    return default_dataset_path().with_name("NOTICE.md").read_text(encoding="utf-8")


def clean_names(lines, *, min_len=None, max_len=None, end_token=DEFAULT_END_TOKEN):
    """Normalise, drop blanks, names holding the end token, lengths outside the bounds, duplicates."""
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    names: list[str] = []
    for line in lines:
        name = normalise(line)
        if not name:
            dropped["blank lines"] += 1
        elif end_token in name:
            dropped[f"names containing the end token {end_token!r}"] += 1
        elif min_len is not None and len(name) < min_len:
            dropped[f"names shorter than {min_len}"] += 1
        elif max_len is not None and len(name) > max_len:
            dropped[f"names longer than {max_len}"] += 1
        elif name in seen:
            dropped["duplicates"] += 1
        else:
            seen.add(name)
            names.append(name)
    return names, dict(dropped)


def _describe(dropped: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in dropped.items())


def build_vocab(names, end_token: str = DEFAULT_END_TOKEN) -> Vocab:
    """Every character the names use, sorted, after the end token."""
    return Vocab(chars=tuple(sorted(set("".join(names)))), end_token=end_token)


def split_names(names, seed: int) -> tuple[list[str], list[str], list[str]]:
    """Deterministic 80/10/10 train/val/test split of the names (not of the windows).

    The names are sorted first, so the split follows from the set of names and the
    seed alone: a model file, which carries both, can rebuild it without the dataset.
    """
    n = len(names)
    n_val = n_test = max(1, round(n * SPLIT_FRACTIONS[1]))
    if n - n_val - n_test < 1:
        raise DataError(f"{n} names are too few to split into train, val and test (need at least 3)")
    ordered = sorted(names)
    shuffled = [ordered[i] for i in np.random.default_rng(seed).permutation(n)]
    return shuffled[n_val + n_test:], shuffled[:n_val], shuffled[n_val:n_val + n_test]


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
