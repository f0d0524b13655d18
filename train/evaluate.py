"""``nametool eval``: losses, count-model baselines and sample quality, from a checkpoint or a model file.

Torch-free: it works on any logits function, so a checkpoint (PyTorch) and its
exported ``.onnx`` (onnxruntime) give the same numbers. A model file rebuilds
its split from the names and seed it carries.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from nametool.runtime import generation
from nametool.runtime.errors import ModelFileError
from nametool.runtime.schema import ModelMeta
from nametool.runtime.windows import target_logprobs
from nametool.train.baseline import ngram_loss, tuned_ngram
from nametool.train.data import split_names
from nametool.runtime.windows import build_windows

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Source:
    """What to evaluate: a logits function, its schema and its split."""

    logits: generation.LogitsFn
    meta: ModelMeta
    splits: dict[str, list[str]]
    sampling: generation.LogitsFn | None = None  # what names are drawn from, if not logits (an exact file's integers)


def splits_from_meta(meta: ModelMeta) -> dict[str, list[str]]:
    """Rebuild the train/val/test split from the names and seed a model file carries."""
    if meta.known_names is None:
        raise ModelFileError("this model file carries no training names, so its split cannot be rebuilt")
    names = sorted(meta.known_names.names)
    if len(names) != meta.provenance.name_count:
        raise ModelFileError(f"the file carries {len(names)} names but says it trained on "
                             f"{meta.provenance.name_count}")
    return dict(zip(SPLITS, split_names(names, meta.provenance.seed)))


def split_loss(logits_fn: generation.LogitsFn, meta: ModelMeta, names: list[str]) -> float:
    """Nats per character of a logits function on every window of ``names``."""
    contexts, targets = build_windows(names, meta.vocab, meta.model.context_size)
    return float(-target_logprobs(logits_fn, contexts, targets).mean())


def sample_quality(source: Source, count: int, seed: int) -> dict:
    """How generated names compare with the training names."""
    draw_from = source.logits if source.sampling is None else source.sampling
    names = generation.generate(draw_from, source.meta, generation.Request(count=count), generation.make_rng(seed))
    train = set(source.splits["train"])
    bounds = source.meta.sampling
    generated = Counter(len(n) for n in names)
    reference = Counter(len(n) for n in source.splits["train"])
    lengths = set(generated) | set(reference)
    tv = 0.5 * sum(abs(generated[n] / len(names) - reference[n] / len(train)) for n in lengths)
    return {
        "count": count,
        "seed": seed,
        "in_training_set": sum(n in train for n in names) / count,
        "unique": len(set(names)) / count,
        "length_tv_distance": tv,
        "inside_length_bounds": sum(bounds.min_len <= len(n) <= bounds.max_len for n in names) / count,
        "length_bounds": [bounds.min_len, bounds.max_len],
        "examples": names[:8],
    }


def evaluate(source: Source, *, samples: int = 1000, seed: int = 0) -> dict:
    vocab, splits = source.meta.vocab, source.splits
    losses = {split: split_loss(source.logits, source.meta, splits[split]) for split in SPLITS}
    report = {"model": {split: _units(loss) for split, loss in losses.items()}, "baselines": {}}
    for name, order in (("unigram", 1), ("bigram", 2), ("trigram", 3)):
        k = tuned_ngram(splits["train"], splits["val"], vocab, order)
        report["baselines"][name] = {
            "k": k, **{split: _units(ngram_loss(splits["train"], splits[split], vocab, order, k)) for split in SPLITS}
        }
    if samples:
        report["samples"] = sample_quality(source, samples, seed)
    return report


def _units(nats: float) -> dict:
    return {"nats": nats, "bits": nats / math.log(2), "perplexity": math.exp(nats)}


def format_report(report: dict) -> str:
    base = report["baselines"]
    head = (f"{'split':6s} {'nats':>7s} {'bits':>7s} {'ppl':>7s}   {'unigram':>8s} "
            f"{'bigram':>8s} {'trigram':>8s}   (baselines: nats, add-k tuned on val)")
    lines = [head]
    for split in SPLITS:
        m = report["model"][split]
        lines.append(f"{split:6s} {m['nats']:7.4f} {m['bits']:7.4f} {m['perplexity']:7.3f}   "
                     + " ".join(f"{base[b][split]['nats']:8.4f}" for b in ("unigram", "bigram", "trigram")))
    lines.append(f"{'k':6s} {'':7s} {'':7s} {'':7s}   " + " ".join(f"{base[b]['k']:8.3g}"
                                                               for b in ("unigram", "bigram", "trigram")))
    s = report.get("samples")
    if s:
        lines.append(
            f"samples ({s['count']:,}, seed {s['seed']}): in training set {s['in_training_set']:.1%}, "
            f"unique {s['unique']:.1%}, length TV distance {s['length_tv_distance']:.3f}, "
            f"inside {s['length_bounds'][0]}-{s['length_bounds'][1]} {s['inside_length_bounds']:.1%}"
        )
        lines.append("  e.g. " + " ".join(s["examples"]))
    return "\n".join(lines) + "\n"
