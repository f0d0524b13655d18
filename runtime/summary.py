"""What ``nametool-run info`` shows about a model file, as plain JSON-ready values."""

from __future__ import annotations

from dataclasses import asdict

from nametool.runtime.model import NameModel


def summary(model: NameModel) -> dict:
    """Everything ``nametool-run info`` shows, as plain JSON-ready values."""
    meta = model.meta
    prov = asdict(meta.provenance)
    notice = prov.pop("data_notice")
    return {
        "path": str(model.path),
        "engine": model.engine,
        "file_bytes": model.path.stat().st_size,
        "schema_version": meta.schema_version,
        "vocab": {"chars": "".join(meta.vocab.chars), "end_token": meta.vocab.end_token, "size": len(meta.vocab)},
        "model": {**asdict(meta.model), "parameters": meta.model.parameter_count(len(meta.vocab)),
                  "description": meta.model.describe()},
        "sampling": asdict(meta.sampling),
        "provenance": prov,
        "data_notice": notice,
        "known_names": None if meta.known_names is None else meta.known_names.count,
        "golden_contexts": None if meta.golden is None else len(meta.golden.contexts),
        "quantization": None if meta.quantization is None else asdict(meta.quantization),
        "first_layer": meta.first_layer,
        "form": meta.form,
        "bounds": None if meta.exact is None else meta.exact.bounds,
    }
