"""The body of ``nametool-run generate``, without click: the click command in ``cli.py`` and the
quick path in ``launch.py`` both run it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nametool.runtime.generation import Request

MANY_NAMES = 2048  # from bench/run.py: below this, one onnxruntime thread starts faster and runs as fast


def generate_names(options: dict, *, model_path: str | None, threads: int | None, engine: str) -> None:
    """``nametool-run generate``: sample names as ``options`` (the sampling options) ask and print them."""
    from nametool.runtime.generation import iter_names, make_rng
    from nametool.runtime.model import NameModel
    from nametool.runtime.output import write_name_chunks

    large = options["count"] >= MANY_NAMES
    if threads is None and not large:
        threads = 1  # a second thread pays off only on large batches; starting it costs ~20 ms
    model = NameModel.load(model_path, threads=threads, engine=engine, large=large)
    if large and model.engine == "numpy":  # its buffers of thousands of rows reused (runtime/memory.py)
        from nametool.runtime.memory import keep_freed_memory

        keep_freed_memory()  # onnxruntime keeps its own arena: no change measured there
    request, seed, fmt = request_from(options)
    chunks = iter_names(model.sampling_logits, model.meta, request, make_rng(seed))
    write_name_chunks(chunks, fmt, model.score)


def request_from(options: dict) -> tuple[Request, int | None, str]:
    """Split CLI options into (engine Request, seed, output format)."""
    from nametool.runtime.generation import Request

    options = dict(options)
    seed, fmt = options.pop("seed"), options.pop("fmt")
    words, path = tuple(options.pop("exclude")), options.pop("exclude_file")
    if path is not None:
        from nametool.runtime.banned import read_words

        words += tuple(read_words(path))
    options["exclude"] = words
    return Request(**options), seed, fmt
