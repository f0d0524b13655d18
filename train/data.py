"""Names file -> clean names -> vocabulary -> (context, next char) windows -> split.

Pure Python and numpy: no torch here, so the data rules are testable anywhere.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from nametool.runtime.errors import DataError, RequestError
from nametool.runtime.schema import END_TOKEN, MAX_NAME_LEN, SEED_RANGE, Vocab, unprintable, valid_seed
from nametool.runtime.text import normalise


DEFAULT_DATASET = "indian_names"
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
READ_BLOCK = 1 << 16  # bytes read at a time: lines of one block are held at once
LINE_LIMIT = 1 << 16  # a longer line is dropped unread: a name is at most MAX_NAME_LEN characters
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc


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
    end_token: str = END_TOKEN,
) -> NameSet:
    """Read one name per line (UTF-8). ``path=None`` is the bundled default dataset.

    The file is streamed block by block: memory grows with the distinct names kept,
    not with the file's size.
    """
    source = DEFAULT_DATASET if path is None else str(path)
    path = default_dataset_path() if path is None else Path(path)
    sha = hashlib.sha256()
    cleaner = _Cleaner(min_len=min_len, max_len=max_len, end_token=end_token)
    try:
        with path.open("rb") as file:
            for lines in _text_blocks(file, path, sha, cleaner):
                cleaner.add(lines)
    except FileNotFoundError:
        raise DataError(f"{path}: no such names file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a names file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    names, dropped = cleaner.names, dict(cleaner.dropped)
    if not names:
        raise DataError(f"{path}: no usable names ({_describe(dropped) or 'the file is empty'})")
    return NameSet(tuple(names), source, sha.hexdigest(), dropped)


def _text_blocks(file, path: Path, sha, cleaner: _Cleaner):
    """The file's lines, a block of whole lines at a time, decoded; ``sha`` sees every byte.

    Blocks end after a newline, so a line (or a ``\\r\\n`` pair, or a UTF-8 sequence)
    never straddles two. A line longer than ``LINE_LIMIT`` bytes is no name: it is
    skipped without being held in memory, and counted by ``cleaner``.
    """
    offset, carry, skipping = 0, b"", False  # offset: where carry (then the next chunk) starts
    while chunk := file.read(READ_BLOCK):
        sha.update(chunk)
        if skipping:  # inside an over-long line: drop up to its newline
            _refuse_nul(chunk, offset, path)  # else /dev/zero would be skipped forever
            cut = chunk.find(b"\n")
            if cut < 0:
                offset += len(chunk)
                continue
            chunk, offset, skipping = chunk[cut + 1:], offset + cut + 1, False
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        block, carry = data[:cut], data[cut:]
        if block:
            yield _decode(block, offset, path)
            offset += len(block)
        if len(carry) > LINE_LIMIT:
            _refuse_nul(carry, offset, path)
            cleaner.add_overlong()
            offset, carry, skipping = offset + len(carry), b"", True
    if carry:
        yield _decode(carry, offset, path)


def _decode(block: bytes, offset: int, path: Path) -> list[str]:
    """Lines of one block, split as ``str.splitlines`` does; ``offset`` is where it starts in the file."""
    if offset == 0 and block.startswith(codecs.BOM_UTF8):
        block, offset = block[len(codecs.BOM_UTF8):], len(codecs.BOM_UTF8)
    try:
        text = block.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (bad byte at offset {offset + exc.start})") from None
    _refuse_nul(block, offset, path)
    return text.splitlines()


def _refuse_nul(data: bytes, offset: int, path: Path) -> None:
    """No text file holds NUL, even valid UTF-8: this is binary data, or UTF-16 without its BOM."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise DataError(f"{path}: a binary file, not UTF-8 text (NUL byte at offset {offset + nul})")


def data_notice(names: NameSet) -> str | None:
    """The credits that travel with a model: the bundled NOTICE for the default dataset."""
    if names.source != DEFAULT_DATASET:
        return None
    return default_dataset_path().with_name("NOTICE.md").read_text(encoding="utf-8")


def clean_names(lines, *, min_len=None, max_len=None, end_token=END_TOKEN):
    """Normalise, drop blanks, control characters, names holding the end token, lengths outside
    the bounds (and beyond ``MAX_NAME_LEN``), duplicates. Returns (names, dropped counts)."""
    cleaner = _Cleaner(min_len=min_len, max_len=max_len, end_token=end_token)
    cleaner.add(lines)
    return cleaner.names, dict(cleaner.dropped)


@dataclass
class _Cleaner:
    """``clean_names`` fed a block of lines at a time, so a file need not be read whole."""

    min_len: int | None
    max_len: int | None
    end_token: str
    dropped: Counter = field(default_factory=Counter)
    names: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def add(self, lines) -> None:
        for line in lines:
            name = normalise(line)
            reason = self._fault(name)
            if reason:
                self.dropped[reason] += 1
            else:
                self.seen.add(name)
                self.names.append(name)

    def add_overlong(self) -> None:
        """A line too long to read: it holds more than ``MAX_NAME_LEN`` characters unless nearly all blanks."""
        self.dropped[self._too_long()] += 1

    def _too_long(self) -> str:
        if self.max_len is not None and self.max_len < MAX_NAME_LEN:
            return f"names longer than {self.max_len}"
        return f"names longer than {MAX_NAME_LEN} characters (nametool's limit)"

    def _fault(self, name: str) -> str | None:
        if not name:
            return "blank lines"
        if _CONTROL.search(name):
            return "names with control characters (tabs, escapes)"
        if self.end_token in name:
            return f"names containing the end token {self.end_token!r}"
        if self.min_len is not None and len(name) < self.min_len:
            return f"names shorter than {self.min_len}"
        if len(name) > MAX_NAME_LEN or (self.max_len is not None and len(name) > self.max_len):
            return self._too_long()
        if name in self.seen:
            return "duplicates"
        return None


def _describe(dropped: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in dropped.items())


def build_vocab(names, end_token: str = END_TOKEN) -> Vocab:
    """Every character the names use, sorted, after the end token."""
    if len(end_token) != 1 or unprintable(end_token):
        raise DataError(f"end token {end_token!r} must be one printable character, such as {END_TOKEN!r}")
    return Vocab(chars=tuple(sorted(set("".join(names)))), end_token=end_token)


def split_names(names, seed: int) -> tuple[list[str], list[str], list[str]]:
    """Deterministic 80/10/10 train/val/test split of the names (not of the windows).

    The names are sorted first, so the split follows from the set of names and the
    seed alone: a model file, which carries both, can rebuild it without the dataset.
    """
    if not valid_seed(seed):
        raise RequestError(f"seed {seed} is outside {SEED_RANGE}")
    n = len(names)
    n_val = n_test = max(1, round(n * SPLIT_FRACTIONS[1]))
    if n - n_val - n_test < 1:
        raise DataError(f"{n} names are too few to split into train, val and test (need at least 3)")
    ordered = sorted(names)
    shuffled = [ordered[i] for i in np.random.default_rng(seed).permutation(n)]
    return shuffled[n_val + n_test:], shuffled[:n_val], shuffled[n_val:n_val + n_test]
