"""Looking at a model file: a summary for people and scripts, and the built-in self-test."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from nametool.runtime.model import NameModel
from nametool.runtime.sampling import next_char_probs


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    contexts: int
    max_deviation: float
    tolerance: float
    message: str


def verify(model: NameModel) -> VerifyReport:
    """Recompute the golden next-char distributions stored at export and compare."""
    golden = model.meta.golden
    if golden is None:
        return VerifyReport(False, 0, float("nan"), float("nan"), "the file carries no golden distributions")
    stored = np.array(golden.probs, dtype=np.float64)
    if stored.ndim != 2 or stored.shape != (len(golden.contexts), len(model.vocab)):
        return VerifyReport(False, 0, float("nan"), golden.tolerance,
                            f"golden table has shape {stored.shape}, expected "
                            f"({len(golden.contexts)}, {len(model.vocab)})")
    try:
        encoded = np.concatenate([model.encode_context(c) for c in golden.contexts])
    except Exception as exc:  # a golden context outside the vocabulary: tampered metadata
        return VerifyReport(False, 0, float("nan"), golden.tolerance, str(exc))
    probs = next_char_probs(model.logits(encoded))
    deviation = float(np.abs(probs - stored).max())
    ok = bool(deviation <= golden.tolerance)  # NaN fails
    verdict = "within" if ok else "exceeds"
    message = (f"{len(golden.contexts)} golden contexts, max |dp| = {deviation:.2e} "
               f"{verdict} tolerance {golden.tolerance:.0e}")
    return VerifyReport(ok, len(golden.contexts), deviation, golden.tolerance, message)


def summary(model: NameModel) -> dict:
    """Everything ``nametool-run info`` shows, as plain JSON-ready values."""
    meta = model.meta
    prov = asdict(meta.provenance)
    notice = prov.pop("data_notice")
    return {
        "path": str(model.path),
        "file_bytes": model.path.stat().st_size,
        "schema_version": meta.schema_version,
        "vocab": {"chars": "".join(meta.vocab.chars), "end_token": meta.vocab.end_token, "size": len(meta.vocab)},
        "model": {**asdict(meta.model), "parameters": meta.model.parameter_count(len(meta.vocab))},
        "sampling": asdict(meta.sampling),
        "provenance": prov,
        "data_notice": notice,
        "known_names": None if meta.known_names is None else meta.known_names.count,
        "golden_contexts": None if meta.golden is None else len(meta.golden.contexts),
        "quantization": None if meta.quantization is None else asdict(meta.quantization),
    }
