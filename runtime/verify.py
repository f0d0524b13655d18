"""``verify``: is this the file export wrote (digests), and does this device compute it as the
exporting one did (golden distributions)?"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nametool.runtime.errors import ModelFileError
from nametool.runtime.model import NameModel, encode_contexts
from nametool.runtime.onnxfile import read_onnx, weight_digests
from nametool.runtime.sampling import UnusableLogits, next_char_probs
from nametool.runtime.schema import METADATA_KEY, metadata_digests

SHOWN = 3  # differences named in one message


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    contexts: int
    max_deviation: float
    tolerance: float
    message: str


def verify(model: NameModel) -> VerifyReport:
    """Compare the file with the digests taken at export, then replay its golden distributions."""
    golden = model.meta.golden
    tolerance = float("nan") if golden is None else golden.tolerance
    changed = integrity_problems(model)
    if changed:
        return VerifyReport(False, 0, float("nan"), tolerance, changed)
    if golden is None:
        return VerifyReport(False, 0, float("nan"), float("nan"), "the file carries no golden distributions")
    widths = sorted({len(row) for row in golden.probs})
    if len(golden.probs) != len(golden.contexts) or widths != [len(model.vocab)]:
        return VerifyReport(False, 0, float("nan"), golden.tolerance,
                            f"golden table has {len(golden.probs)} rows of widths {widths}, expected "
                            f"{len(golden.contexts)} rows of {len(model.vocab)}")
    stored = np.array(golden.probs, dtype=np.float64)  # (contexts, vocab)
    try:
        encoded = encode_contexts(model.meta, golden.contexts)
    except Exception as exc:  # a golden context outside the vocabulary: tampered metadata
        return VerifyReport(False, 0, float("nan"), golden.tolerance, str(exc))
    if model.form == "exact":
        return _verify_exact(model, encoded, stored)
    try:
        probs = next_char_probs(model.logits(encoded))
    except UnusableLogits as exc:
        return VerifyReport(False, len(golden.contexts), float("nan"), golden.tolerance, str(exc))
    deviation = float(np.abs(probs - stored).max())
    ok = bool(deviation <= golden.tolerance)  # NaN fails
    verdict = "within" if ok else "exceeds"
    digests = model.meta.integrity
    message = (f"digests of {len(digests.tensors)} tensors, the graph and {len(digests.metadata)} metadata "
               f"sections match; {len(golden.contexts)} golden contexts on {model.engine}, "
               f"max |dp| = {deviation:.2e} {verdict} tolerance {golden.tolerance:.0e}")
    return VerifyReport(ok, len(golden.contexts), deviation, golden.tolerance, message)


def integrity_problems(model: NameModel) -> str | None:
    """What differs between the file and the digests recorded at export, or None."""
    recorded = model.meta.integrity
    if recorded is None:
        return "the file carries no digests of its weights and metadata (exported by an older nametool): re-export it"
    if model.data is None:
        return "the file's bytes are not at hand to check"
    try:
        tensors, graph = weight_digests(model.data)
        entries = read_onnx(model.data).metadata
        stored = metadata_digests(entries[METADATA_KEY])
    except ModelFileError as exc:
        return str(exc)
    # export writes one metadata entry: any other was added since (the digests cover what is in it)
    problems = [f"metadata entry {key!r} was added" for key in entries if key != METADATA_KEY]
    problems += _differences("weight", recorded.tensors, tensors)
    if graph != recorded.graph:
        problems.append("the graph's nodes, inputs, outputs or opsets differ from export")
    problems += _differences("metadata section", recorded.metadata, stored)
    if not problems:
        return None
    more = f" (and {len(problems) - SHOWN} more)" if len(problems) > SHOWN else ""
    return "changed since export: " + "; ".join(problems[:SHOWN]) + more


def _differences(what: str, recorded: dict[str, str], found: dict[str, str]) -> list[str]:
    out = [f"{what} {name!r} differs from export" for name in recorded if name in found
           and found[name] != recorded[name]]
    out += [f"{what} {name!r} is missing" for name in recorded if name not in found]
    out += [f"{what} {name!r} was added" for name in found if name not in recorded]
    return out


def _verify_exact(model: NameModel, encoded: np.ndarray, stored: np.ndarray) -> VerifyReport:
    """An exact file: the bounds recomputed from its integers, and the golden masses equal, id for id."""
    from nametool.runtime.exact import check_exact, exact_probs

    golden = model.meta.golden
    try:
        bounds = check_exact(read_onnx(model.data), model.meta)
    except ModelFileError as exc:
        return VerifyReport(False, 0, float("nan"), golden.tolerance, str(exc))
    mass = exact_probs(model.integer_logits(encoded), *model._exact)
    differ = int((mass != stored).any(axis=1).sum())
    deviation = float(np.abs(mass - stored).max())
    digests = model.meta.integrity
    shown = ", ".join(f"{layer} {bound:,}" for layer, bound in bounds.items())
    verdict = "all equal" if not differ else f"{differ} differ"
    message = (f"digests of {len(digests.tensors)} tensors, the graph and {len(digests.metadata)} metadata "
               f"sections match; partial sums below 2^24 ({shown}); {len(golden.contexts)} golden contexts "
               f"on {model.engine}, integer masses {verdict}")
    return VerifyReport(not differ, len(golden.contexts), deviation, golden.tolerance, message)
