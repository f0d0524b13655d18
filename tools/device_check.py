"""Run on a device: verify each bundled model, generate seeded names, time generation; print JSON.

    python3 device_check.py [--engine auto|numpy|onnxruntime] [--names 200] [--timed 2000]

Needs only what the runtime needs (numpy, click, onnxruntime where installed) and
``nametool.runtime`` on the path; ``tools/devices.py`` copies both onto emulated
devices and compares what this prints there with what it prints here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--names", type=int, default=200, help="seeded names compared between devices")
    parser.add_argument("--timed", type=int, default=2000, help="names generated for the names/s figure")
    parser.add_argument("--models", default=None, help="bundled models to check, comma-separated (default: all)")
    args = parser.parse_args()

    import numpy

    from nametool.runtime.verify import verify
    from nametool.runtime.model import NameModel, bundled_models

    rows = []
    for name in (args.models.split(",") if args.models else bundled_models()):
        model = NameModel.load(name, engine=args.engine, threads=1)
        report = verify(model)
        names = model.generate(args.names, seed=7, batch_size=4096)
        contexts = numpy.random.default_rng(0).integers(0, len(model.vocab), (300, model.context_size))
        outputs = model.integer_logits(contexts) if model.form == "exact" else model.logits(contexts)
        logits = hashlib.sha256(outputs.tobytes()).hexdigest()
        start = time.perf_counter()
        model.generate(args.timed, seed=8)
        seconds = time.perf_counter() - start
        rows.append({"model": name, "form": model.form, "engine": model.engine, "verify_ok": report.ok,
                     "max_dp": report.max_deviation, "message": report.message,
                     "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest(),
                     "first_names": names[:5], "logits_sha256": logits, "names_per_s": args.timed / seconds})
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    print(json.dumps({"machine": platform.machine(), "python": platform.python_version(),
                      "numpy": numpy.__version__, "onnxruntime": ort_version, "models": rows}))


if __name__ == "__main__":
    sys.exit(main())
