"""Data rules: normalisation, filtering counts, the split, windows and the vocabulary."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nametool.runtime.errors import DataError
from nametool.runtime.schema import Vocab
from nametool.runtime.windows import build_windows
from nametool.train.data import (
    build_vocab,
    clean_names,
    default_dataset_path,
    load_names,
    split_names,
)


def test_windows_follow_the_lecture_example():
    vocab = build_vocab(["aabid"])
    contexts, targets = build_windows(["aabid"], vocab, 3)
    pairs = [(vocab.decode(c), vocab.itos()[t]) for c, t in zip(contexts, targets)]
    assert pairs == [("...", "a"), ("..a", "a"), (".aa", "b"), ("aab", "i"), ("abi", "d"), ("bid", ".")]


def test_windows_count_one_per_character_plus_the_end():
    names = ["ab", "xyz", "q"]
    contexts, targets = build_windows(names, build_vocab(names), 5)
    assert contexts.shape == (3 + 4 + 2, 5) and targets.shape == (9,)
    assert (targets == 0).sum() == 3


def test_clean_names_normalises_dedupes_and_counts_what_it_drops():
    lines = ["  Aabid ", "aabid", "", "   ", "Zeel", "x.y", "ab", "abcdefghijk"]
    names, dropped = clean_names(lines, min_len=3, max_len=9)
    assert names == ["aabid", "zeel"]
    assert dropped == {
        "duplicates": 1,
        "blank lines": 2,
        "names containing the end token '.'": 1,
        "names shorter than 3": 1,
        "names longer than 9": 1,
    }


def test_no_length_filter_unless_asked():
    names, dropped = clean_names(["a", "abcdefghijklmnop"])
    assert names == ["a", "abcdefghijklmnop"] and dropped == {}


def test_load_names_reads_bom_and_windows_line_endings(tmp_path):
    path = tmp_path / "names.txt"
    raw = "\ufeffAsha\r\nRavi\r\n\r\nasha\r\n".encode()
    path.write_bytes(raw)
    names = load_names(path)
    assert names.names == ("asha", "ravi")
    assert names.dropped == {"blank lines": 1, "duplicates": 1}
    assert names.sha256 == hashlib.sha256(raw).hexdigest()  # of the bytes as they are, BOM and CRs included


def test_other_alphabets_make_their_own_vocabulary(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("अनिल\nसुनीता\nJosé\n", encoding="utf-8")
    names = load_names(path)
    vocab = build_vocab(names.names)
    assert "é" in vocab.chars and "न" in vocab.chars and "." == vocab.end_token
    assert vocab.decode(vocab.encode("josé")) == "josé"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such names file"),
        (b"", "no usable names"),
        (b"\n  \n\n", "no usable names (3 blank lines)"),
        (b"\xff\xfeab\x00", "not UTF-8"),
    ],
)
def test_unusable_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "names.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_names(path)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        load_names(tmp_path)


def test_default_dataset_matches_the_lecture_assumptions():
    names = load_names()
    assert names.source == "indian_names" and not names.dropped
    assert len(names.names) > 25_000
    assert all(5 <= len(n) <= 9 and n.isascii() and n.isalpha() and n.islower() for n in names.names)
    assert {"aabid", "aabida", "aadesh"} <= set(names.names)
    assert not {"smt", "shrimati", "kumari", "miss"} & set(names.names)
    assert default_dataset_path().with_name("NOTICE.md").is_file()


def test_split_is_80_10_10_disjoint_and_deterministic():
    names = [f"name{i}" for i in range(1000)]
    train, val, test = split_names(names, seed=3)
    assert (len(train), len(val), len(test)) == (800, 100, 100)
    assert set(train) | set(val) | set(test) == set(names)
    assert not set(train) & set(val) and not set(val) & set(test)
    assert split_names(names, seed=3) == (train, val, test)
    assert split_names(names, seed=4) != (train, val, test)


@given(st.integers(min_value=3, max_value=300))
def test_any_splittable_size_gives_three_non_empty_splits(n):
    train, val, test = split_names([str(i) for i in range(n)], seed=0)
    assert train and val and test and len(train) + len(val) + len(test) == n


@pytest.mark.parametrize("n", [0, 1, 2])
def test_too_few_names_to_split_is_an_error(n):
    with pytest.raises(DataError, match=f"{n} names are too few"):
        split_names([str(i) for i in range(n)], seed=0)


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters=".", blacklist_categories=("Cs",)),
                        min_size=1, max_size=12), min_size=1, max_size=20))
def test_vocab_encode_decode_round_trips(names):
    vocab = build_vocab(names)
    for name in names:
        assert vocab.decode(vocab.encode(name)) == name


def test_encode_names_the_characters_outside_the_vocabulary():
    vocab = Vocab(chars=tuple("abc"))
    with pytest.raises(ValueError, match="'x', 'z' not in the vocabulary"):
        vocab.encode("azx")
    assert np.array_equal(vocab.encode("cab"), [3, 1, 2])
