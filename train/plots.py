"""Pictures of what a model learned: loss curves, character embeddings, next-character bars.

matplotlib (the ``plot`` extra) draws off-screen; every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nametool.runtime.atomic import atomic_path

VOWELS = frozenset("aeiou")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path, force: bool) -> None:
    with atomic_path(out, force=force) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)


def plot_loss(history: dict, title: str, out: Path, *, members: int = 1, force: bool = False) -> None:
    """Train and val loss over steps. With several members the train curve is their mean own loss
    (what training minimises); val is the averaged model's."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    train_label = "train (smoothed)" if members == 1 else f"train (smoothed, mean of the {members} members)"
    ax.plot(history["step"], history["train_loss"], label=train_label, color="tab:blue")
    val_label = "val" if members == 1 else "val (the averaged model)"
    ax.plot(history["step"], history["val_loss"], label=val_label, color="tab:orange", marker="o", markersize=3)
    best = int(np.argmin(history["val_loss"]))
    ax.scatter([history["step"][best]], [history["val_loss"][best]], color="black", zorder=3,
               label=f"best val {history['val_loss'][best]:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, out, force)


def project_2d(vectors: np.ndarray) -> tuple[np.ndarray, str]:
    """The vectors themselves when 2-D, else their first two principal components."""
    if vectors.shape[1] == 2:
        return vectors, "the embedding itself (2-D)"
    centred = vectors - vectors.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    explained = singular[:2] ** 2 / (singular ** 2).sum()
    return centred @ vt[:2].T, f"PCA of {vectors.shape[1]}-D, {explained.sum():.0%} of variance"


def vowel_separation(vectors: np.ndarray, chars: tuple[str, ...]) -> float | None:
    """Mean vowel-consonant distance over mean vowel-vowel distance, in the full space (> 1: vowels cluster)."""
    vowel = np.array([c in VOWELS for c in chars])
    letters = np.array([c.isalpha() for c in chars])
    if vowel.sum() < 2 or (letters & ~vowel).sum() < 2:
        return None
    dist = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    within = dist[np.ix_(vowel, vowel)][~np.eye(vowel.sum(), dtype=bool)].mean()
    across = dist[np.ix_(vowel, letters & ~vowel)].mean()
    return float(across / within)


def plot_embeddings(weights: np.ndarray, itos: tuple[str, ...], title: str, out: Path, *,
                    force: bool = False) -> float | None:
    """Scatter of every character's embedding, labelled; vowels in red. Returns the vowel separation."""
    plt = _pyplot()
    points, how = project_2d(weights)
    fig, ax = plt.subplots(figsize=(6.5, 6.5))
    for (x, y), char in zip(points, itos):
        color = "tab:red" if char in VOWELS else ("tab:gray" if not char.isalpha() else "tab:blue")
        ax.scatter([x], [y], s=260, color=color, alpha=0.25)
        ax.annotate(char, (x, y), ha="center", va="center", fontsize=14, fontweight="bold", color=color)
    separation = vowel_separation(weights, itos)
    subtitle = how if separation is None else (
        f"{how}; vowels (red): distance to consonants / to each other = {separation:.2f}")
    ax.set_title(f"{title}\n{subtitle}", fontsize=11)
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.grid(alpha=0.3)
    _save(fig, out, force)
    return separation


def plot_next(distribution: dict[str, float], context: str, end_token: str, title: str, out: Path, *,
              top: int | None = None, force: bool = False) -> None:
    plt = _pyplot()
    items = list(distribution.items())[:top]
    labels = [f"{c}\n(end)" if c == end_token else c for c, _ in items]
    fig, ax = plt.subplots(figsize=(max(6, 0.32 * len(items) + 2), 4))
    ax.bar(range(len(items)), [p for _, p in items], color="tab:blue")
    ax.set_xticks(range(len(items)), labels, fontsize=11)
    ax.set_ylabel("probability")
    ax.set_xlabel("next character")
    ax.set_title(f"{title}\nP(next | {context!r})")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, out, force)
