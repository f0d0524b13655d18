"""--exclude: no generated name contains an excluded word, by an automaton checked against plain search."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from nametool.runtime import NameModel, RequestError
from nametool.runtime.banned import Banned
from nametool.runtime.cli import main as run_main
from nametool.runtime.schema import Vocab

VOCAB = Vocab(chars=tuple("abc"))
words = st.lists(st.text(alphabet="abc", min_size=1, max_size=4), min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(words=words, text=st.text(alphabet="abc", max_size=12))
def test_the_automaton_finds_a_word_exactly_when_plain_search_does(words, text):
    banned = Banned(words, VOCAB)
    ids = [VOCAB.stoi()[c] for c in text]
    contains = any(w in text for w in words)
    assert (banned.walk(ids) < 0) == contains
    if not contains:  # the mask for the next character is what plain search says too
        state = banned.walk(ids)
        for c in "abc":
            assert banned.completes[state, VOCAB.stoi()[c]] == any((text + c).endswith(w) for w in words)


def test_a_few_thousand_real_names_never_appear_in_100000_generated_ones():
    """The bundled lecture model, excluding 3,000 names of its own training data as substrings."""
    model = NameModel.load("lecture")
    known = sorted(model.meta.known_names.names)
    rng = np.random.default_rng(0)
    excluded = [known[i] for i in rng.choice(len(known), 3000, replace=False)]
    names = model.generate(100_000, seed=1, exclude=tuple(excluded))
    assert len(names) == 100_000
    found = [(n, w) for n in names for w in excluded if w in n]
    assert found == []
    free = model.generate(100_000, seed=1)
    assert sum(any(w in n for w in excluded) for n in free[:20_000]) > 0  # without it, some do appear


def test_excluded_words_reach_the_cli_from_arguments_and_a_file(tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("# banned\nan\n\nIN\n", encoding="utf-8")
    result = CliRunner().invoke(run_main, ["generate", "-n", "500", "--seed", "3", "--exclude", "sh",
                                           "--exclude-file", str(words)])
    assert result.exit_code == 0, result.output
    names = result.output.split()
    assert len(names) == 500 and not any(w in n for n in names for w in ("sh", "an", "in"))


@pytest.mark.parametrize("args, message", [
    (["--prefix", "ra", "--exclude", "ra"], "prefix 'ra' contains an excluded word"),
    ([*sum((["--exclude", c] for c in "abcdefghijklmnopqrstuvwxyz"), []), "--min-len", "2"],
     "every character the model allows would complete an excluded word or is the end"),
    (["--exclude-file", "/nonexistent/words.txt"], "/nonexistent/words.txt: cannot read"),
])
def test_impossible_exclusions_are_one_line_errors(args, message):
    result = CliRunner().invoke(run_main, ["generate", "-n", "5", "--seed", "1", *args])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output


def test_words_the_vocabulary_cannot_spell_mask_nothing():
    banned = Banned(["zoë", "x.y", "ab"], Vocab(chars=tuple("abxyz")))
    assert banned.words == ("ab", "x.y", "zoë") and len(banned.next) == 3  # root, a, ab
    with pytest.raises(RequestError, match="more than"):
        import nametool.runtime.banned as module

        saved, module.MAX_STATES = module.MAX_STATES, 3
        try:
            Banned(["abc"], VOCAB)
        finally:
            module.MAX_STATES = saved


def test_suffix_and_contains_hold_for_every_name_and_give_up_in_one_line():
    runner = CliRunner()
    base = ["generate", "--model", "lecture", "-n", "200", "--seed", "4"]
    ends = runner.invoke(run_main, [*base, "--suffix", "esh"]).output.split()
    assert len(ends) == 200 and all(name.endswith("esh") for name in ends)
    inside = runner.invoke(run_main, [*base, "--contains", "vi", "--unique"]).output.split()
    assert len(set(inside)) == 200 and all("vi" in name for name in inside)
    refused = runner.invoke(run_main, ["generate", "--model", "lecture", "-n", "1", "--suffix", "qqq"])
    assert refused.exit_code == 1 and refused.output.count("\n") == 1
    assert "found only 0 names ending in 'qqq' of the 1 asked for in 101000 draws" in refused.output
    bad = runner.invoke(run_main, ["generate", "--contains", "Z"])
    assert bad.exit_code == 1 and "contains 'Z': 'Z' not in the vocabulary" in bad.output
