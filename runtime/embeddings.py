"""The character embedding table, read from the model file: vectors, nearest characters, analogies.

The lecture shows the table itself and word2vec's idea that similar things sit close
(child crying = child smiling + adult crying - adult smiling). Here the "words" are
characters: ``a:e::o:?`` asks which character is to ``o`` what ``e`` is to ``a``.
The table is stored in the file as it was trained (a folded file keeps it too), so
this needs neither onnxruntime nor torch.
"""

from __future__ import annotations

import re

import numpy as np

from nametool.runtime.errors import ModelFileError, RequestError
from nametool.runtime.onnxfile import read_onnx

TABLE_SUFFIX = "embed.weight"  # the embedding's name in every nametool export, one per member


def embedding_tables(data: bytes, vocab_size: int) -> list[np.ndarray]:
    """Each member's (vocab, embed_dim) table, in member order."""
    found = {name: array for name, array in read_onnx(data).initializers.items() if name.endswith(TABLE_SUFFIX)}
    tables = [found[name] for name in sorted(found, key=_member_index)]
    if not tables or any(t.ndim != 2 or len(t) != vocab_size for t in tables):
        raise ModelFileError(f"no embedding table of {vocab_size} rows in the file (initializers named "
                             f"'...{TABLE_SUFFIX}')")
    return [np.asarray(t, dtype=np.float32) for t in tables]


def _member_index(name: str) -> int:
    found = re.search(r"members\.(\d+)\.", name)
    return int(found.group(1)) if found else 0


def cosine_similarities(table: np.ndarray, vector: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(table, axis=1) * np.linalg.norm(vector)
    return (table @ vector) / np.where(norms > 0, norms, 1.0)


def nearest(table: np.ndarray, itos: tuple[str, ...], char: str, top: int) -> dict[str, list[tuple[str, float]]]:
    """The ``top`` characters closest to ``char``, by cosine similarity and by Euclidean distance."""
    row = _row(itos, char)
    others = [i for i in range(len(itos)) if i != row]
    cos = cosine_similarities(table, table[row])
    dist = np.linalg.norm(table - table[row], axis=1)
    by_cos = sorted(others, key=lambda i: (-cos[i], i))[:top]
    by_dist = sorted(others, key=lambda i: (dist[i], i))[:top]
    return {"cosine": [(itos[i], float(cos[i])) for i in by_cos],
            "euclidean": [(itos[i], float(dist[i])) for i in by_dist]}


def parse_analogy(text: str) -> tuple[str, str, str]:
    """``a:e::o:?`` -> ("a", "e", "o")."""
    found = re.fullmatch(r"(.):(.)::(.):\?", text)
    if not found:
        raise RequestError(f"analogy {text!r}: write it as a:b::c:? (one character each), e.g. a:e::o:?")
    return found.group(1), found.group(2), found.group(3)


def analogy(table: np.ndarray, itos: tuple[str, ...], a: str, b: str, c: str, top: int) -> list[tuple[str, float]]:
    """Characters whose vectors are closest (cosine) to ``E[b] - E[a] + E[c]``, the three given left out."""
    ia, ib, ic = (_row(itos, ch) for ch in (a, b, c))
    target = table[ib] - table[ia] + table[ic]
    cos = cosine_similarities(table, target)
    ranked = sorted((i for i in range(len(itos)) if i not in (ia, ib, ic)), key=lambda i: (-cos[i], i))
    return [(itos[i], float(cos[i])) for i in ranked[:top]]


def _row(itos: tuple[str, ...], char: str) -> int:
    if char not in itos:
        shown = "".join(itos[1:]) if len(itos) <= 41 else "".join(itos[1:41]) + "..."
        raise RequestError(f"{char!r} is not in this model's vocabulary ({shown}, end {itos[0]!r})")
    return itos.index(char)
