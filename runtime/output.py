"""Writing results to standard output, as the command-line tools print them; no click here, so
``launch``'s quick path can print names without importing it."""

from __future__ import annotations

import json
import os
import sys


def write_names(names: list[str], fmt: str, score) -> None:
    """Print names as text lines, or as json/jsonl/csv with their log-probabilities (via ``score``)."""
    write_name_chunks([names], fmt, score)


def write_name_chunks(chunks, fmt: str, score) -> None:
    """Write each chunk of names as soon as it is made: memory stays that of one chunk, and a reader
    that stops early (``| head``) ends the run at the next write. json is one array, as before."""
    first = True
    for names in chunks:
        if fmt == "text":
            write_text("".join(f"{name}\n" for name in names))
            continue
        logps = [s.log_likelihood for s in score(names)] if names else []
        rows = [{"name": n, "logprob": round(lp, 6)} for n, lp in zip(names, logps)]
        if fmt == "jsonl":
            write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        elif fmt == "json":  # the layout of json.dumps(all_rows, indent=1), one chunk at a time
            items = [" " + json.dumps(row, ensure_ascii=False, indent=1).replace("\n", "\n ") for row in rows]
            if items:
                write_text(("[\n" if first else ",\n") + ",\n".join(items))
                first = False
        else:
            import csv
            import io

            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            if first:
                writer.writerow(["name", "logprob"])
                first = False
            writer.writerows([n, f"{lp:.6f}"] for n, lp in zip(names, logps))
            write_text(buffer.getvalue())
    if fmt == "json":
        write_text("[]\n" if first else "\n]\n")
    elif fmt == "csv" and first:
        write_text("name,logprob\n")


def write_text(text: str) -> None:
    """Write UTF-8 whatever the locale; a closed pipe (``| head``) ends quietly."""
    try:
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:  # a text-only stream
            sys.stdout.write(text)
        else:
            buffer.write(text.encode("utf-8"))
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
