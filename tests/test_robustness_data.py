"""Robustness: names files that are missing, binary, odd, huge or too small.

``load_names`` streams the file block by block; these tests hold it to the rules of
the former read-whole version (same names, counts and sha256) at any block size,
and check what each kind of bad file tells the user.
"""

from __future__ import annotations

import codecs
import hashlib
import tracemalloc
from unittest import mock

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from nametool.runtime.errors import DataError
from nametool.train import data
from nametool.train.data import build_vocab, clean_names, load_names
from nametool.runtime.windows import build_windows


def write(tmp_path, content: bytes, name: str = "names.txt"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("content, message", [
    (None, "no such names file"),
    ("folder", "is a directory, expected a names file"),
    (b"", "no usable names (the file is empty)"),
    (b"\n\n\n", "no usable names (3 blank lines)"),
    (b" \t \r\n\xc2\xa0\n\xe3\x80\x80\n", "no usable names (3 blank lines)"),  # tabs, NBSP, ideographic space
    (codecs.BOM_UTF8, "no usable names (the file is empty)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8 text (bad byte at offset 0)"),
    (b"asha\nravi\nJos\xe9\n", "not UTF-8 text (bad byte at offset 13)"),  # Latin-1
    (codecs.BOM_UTF8 + b"ab\xff", "not UTF-8 text (bad byte at offset 5)"),
    ("asha\nravi\n".encode("utf-16"), "not UTF-8 text (bad byte at offset 0)"),  # with its BOM
    ("asha\nravi\n".encode("utf-16-le"), "a binary file, not UTF-8 text (NUL byte at offset 1)"),
    (b"\x00" * 100, "a binary file, not UTF-8 text (NUL byte at offset 0)"),
    (b"asha\n" * 10 + b"ra\x00vi\n", "NUL byte at offset 52"),
    (b"x.y\n..\n", "no usable names (2 names containing the end token '.')"),
    (b"a\tb\nc\x1bd\n", "no usable names (2 names with control characters (tabs, escapes))"),
    (b"n" * 300 + b"\n", "no usable names (1 names longer than 256 characters (nametool's limit))"),
])
def test_unusable_files_say_what_is_wrong(tmp_path, content, message):
    if content is None:
        path = tmp_path / "missing.txt"
    elif content == "folder":
        path = tmp_path
    else:
        path = write(tmp_path, content)
    with pytest.raises(DataError) as caught:
        load_names(path)
    assert message in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_random_bytes_are_refused_not_read_as_names(tmp_path):
    import numpy as np

    rng = np.random.default_rng(3)
    for i in range(20):
        path = write(tmp_path, rng.bytes(int(rng.integers(1, 5000))), f"r{i}.bin")
        with pytest.raises(DataError, match="not UTF-8 text|a binary file"):
            load_names(path)


def test_an_endless_binary_stream_is_refused_at_once():
    with pytest.raises(DataError, match="NUL byte at offset 0"):
        load_names("/dev/zero")  # no newline ever: the reader must not skip it forever


def test_line_endings_bom_case_and_unicode_forms_give_the_same_names(tmp_path):
    nfd = "jose\u0301"  # e + combining acute: NFC makes it é
    content = "\ufeffAsha\r\nravi\rMEENA\n\nJosé\u2028" + nfd + "\x85zoë\r\n"
    names = load_names(write(tmp_path, content.encode("utf-8")))
    assert names.names == ("asha", "ravi", "meena", "josé", "zoë")
    assert names.dropped == {"blank lines": 1, "duplicates": 1}


def test_duplicates_are_counted_and_the_first_kept(tmp_path):
    names = load_names(write(tmp_path, b"ravi\nasha\nRavi\n ravi \nasha\n"))
    assert names.names == ("ravi", "asha") and names.dropped == {"duplicates": 3}


def test_characters_beyond_a_z_make_their_own_vocabulary(tmp_path):
    text = "o'brien\nanne-marie\nzoë\nअनिल\n李娜\nmaría josé\n😀ravi\n"
    names = load_names(write(tmp_path, text.encode()))
    assert len(names.names) == 7  # the alphabet is the data's: nothing outside it to refuse
    vocab = build_vocab(names.names)
    assert {"'", "-", " ", "ë", "अ", "李", "😀"} <= set(vocab.chars)
    contexts, targets = build_windows(names.names, vocab, 3)
    assert len(targets) == sum(len(n) + 1 for n in names.names)
    with pytest.raises(DataError, match="characters outside the vocabulary"):
        build_windows(["ravi"], build_vocab(["asha"]), 3)


def test_very_long_lines_are_dropped_without_being_held(tmp_path):
    long_line = b"x" * (data.LINE_LIMIT * 5)  # spans several read blocks
    content = b"asha\n" + long_line + b"\nravi\n" + b"y" * 300 + b"\n" + long_line  # the last one unterminated
    names = load_names(write(tmp_path, content))
    assert names.names == ("asha", "ravi")
    assert names.dropped == {"names longer than 256 characters (nametool's limit)": 3}
    assert names.sha256 == hashlib.sha256(content).hexdigest()
    shorter = load_names(write(tmp_path, content, "b.txt"), max_len=9)
    assert shorter.dropped == {"names longer than 9": 3}


@pytest.mark.parametrize("count, message", [(1, "1 names are too few"), (2, "2 names are too few")])
def test_fewer_names_than_a_split_needs(tmp_path, count, message):
    pytest.importorskip("torch")
    from nametool.train.cli import main as tool_main

    path = write(tmp_path, "".join(f"name{chr(97 + i)}\n" for i in range(count)).encode())
    result = CliRunner().invoke(tool_main, ["train", "--data", str(path), "--steps", "5",
                                            "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 1 and f"Error: {message} to split into train, val and test" in result.output
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "no usable names (the file is empty)"),
    (b"\xff\xfe", "not UTF-8 text"),
    (b"\x00", "a binary file"),
])
def test_bad_files_through_the_cli_are_one_line(tmp_path, content, message):
    pytest.importorskip("torch")
    from nametool.train.cli import main as tool_main

    result = CliRunner().invoke(tool_main, ["train", "--data", str(write(tmp_path, content)),
                                            "--out", str(tmp_path / "m.pt")])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output
    assert isinstance(result.exception, SystemExit)


# -- streaming: the same answer as reading the whole file, at any block size ------------------------

def read_whole(raw: bytes, **options):
    """The former load_names, which held the file, its text and its lines at once."""
    return clean_names(raw.decode("utf-8-sig").splitlines(), **options)


LINE_PIECES = st.sampled_from(["asha", "Ravi", "zoë", "अनिल", " ", "", "a.b", "ab\tc", "x" * 40, "é", "e\u0301"])
SEPARATORS = st.sampled_from(["\n", "\r\n", "\r", "\x85", "\u2028", "\x0b", "\n\n"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(LINE_PIECES, SEPARATORS), max_size=30), st.booleans(), st.booleans(),
       st.integers(min_value=1, max_value=64))
def test_streaming_matches_reading_the_whole_file(pieces, bom, final_newline, block):
    text = "".join(piece + sep for piece, sep in pieces)
    if not final_newline:
        text = text.rstrip("\n")
    raw = (codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8")
    expected_names, expected_dropped = read_whole(raw, min_len=2, max_len=30)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp, mock.patch.object(data, "READ_BLOCK", block):
        path = Path(tmp) / "names.txt"
        path.write_bytes(raw)
        if not expected_names:
            with pytest.raises(DataError, match="no usable names"):
                load_names(path, min_len=2, max_len=30)
            return
        got = load_names(path, min_len=2, max_len=30)
    assert list(got.names) == expected_names and got.dropped == expected_dropped
    assert got.sha256 == hashlib.sha256(raw).hexdigest()


def test_bad_byte_offsets_are_exact_at_any_block_size(tmp_path):
    raw = b"asha\nravi\n" * 30 + b"mee\xffna\n"
    path = write(tmp_path, raw)
    for block in (1, 3, 7, 64, 1 << 16):
        with mock.patch.object(data, "READ_BLOCK", block), pytest.raises(DataError, match="offset 303"):
            load_names(path)


def test_a_million_lines_load_with_memory_bounded_by_the_distinct_names(tmp_path):
    names = [f"{a}{b}{c}" for a in ("ka", "ra", "mi", "an", "sh") for b in ("vi", "ja", "ya", "la")
             for c in ("ti", "po", "de", "su", "ru")]  # 100 distinct names
    lines = [names[i % len(names)].upper() if i % 7 == 0 else names[i % len(names)] for i in range(1_000_000)]
    raw = ("\n".join(lines) + "\n").encode()
    path = write(tmp_path, raw)
    tracemalloc.start()
    try:
        loaded = load_names(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert loaded.names == tuple(names) and loaded.dropped == {"duplicates": 1_000_000 - len(names)}
    assert loaded.sha256 == hashlib.sha256(raw).hexdigest()
    # the file is about 7 MB; read whole, its bytes, text and lines would take several times that
    assert peak < len(raw) / 2, f"peak {peak:,} bytes for a {len(raw):,}-byte file"
