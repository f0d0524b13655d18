"""Words no generated name may contain: an Aho-Corasick automaton that runs beside each name.

Every state is "the longest suffix of the name so far that begins a banned word". For
each state the automaton knows, per character id, the next state and whether taking
that character would complete a banned word (a word ends at the next state or at one of
its suffix links). The sampler masks those characters before drawing, so generation
ends without rejection wherever the model leaves any other character possible.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from nametool.runtime.errors import RequestError
from nametool.runtime.schema import Vocab
from nametool.runtime.text import normalise

MAX_STATES = 1_000_000  # about 27 MB of transitions for a 27-id vocabulary


class Banned:
    """The automaton over a vocabulary's ids. State 0 is the empty suffix (the start of a name)."""

    def __init__(self, words, vocab: Vocab):
        table = vocab.stoi()
        self.words = tuple(sorted({w for w in (normalise(x) for x in words) if w}))
        # words with a character outside the vocabulary can never be generated: nothing to mask
        usable = [[table[c] for c in w] for w in self.words if all(c in table and c != vocab.end_token for c in w)]
        goto, ends = [{}], [False]
        for ids in usable:
            state = 0
            for i in ids:
                if i not in goto[state]:
                    if len(goto) >= MAX_STATES:
                        raise RequestError(f"the excluded words make more than {MAX_STATES:,} automaton states; "
                                           "exclude fewer or shorter words")
                    goto[state][i] = len(goto)
                    goto.append({})
                    ends.append(False)
                state = goto[state][i]
            ends[state] = True
        size = len(vocab)
        self.next = np.zeros((len(goto), size), dtype=np.int32)  # (states, vocab)
        fail = [0] * len(goto)
        queue = deque()
        for i in range(size):
            child = goto[0].get(i)
            if child is not None:
                self.next[0, i] = child
                queue.append(child)
        while queue:  # breadth first: a state's fail link is settled before its children's
            state = queue.popleft()
            ends[state] = ends[state] or ends[fail[state]]
            for i in range(size):
                child = goto[state].get(i)
                if child is None:
                    self.next[state, i] = self.next[fail[state], i]
                else:
                    fail[child] = self.next[fail[state], i]
                    self.next[state, i] = child
                    queue.append(child)
        self.completes = np.asarray(ends)[self.next]  # (states, vocab): taking the id completes a word
        self.completes[:, vocab.end_id] = False  # ending a name completes no word

    def walk(self, ids) -> int:
        """The state after ``ids`` from the start; -1 if they already contain a banned word."""
        state = 0
        for i in ids:
            if self.completes[state, i]:
                return -1
            state = int(self.next[state, i])
        return state


def read_words(path) -> list[str]:
    """One word per line, UTF-8; blank lines and lines starting with # are skipped."""
    try:
        text = open(path, encoding="utf-8-sig").read()
    except OSError as exc:
        raise RequestError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise RequestError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
