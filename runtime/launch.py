"""``nametool-run``'s entry point, with a quick path for the commonest call.

``nametool-run generate`` with nothing but ``-n/--count``, ``--seed`` and ``--model`` (each a
separate word followed by a plain value) runs here without importing click: click's import,
its command tree and its parser are about 10 ms of a 115 ms start (on the 2-core Xeon with
AVX-512 and AMX: bench/cold_interleaved.py, docs/benchmarks.md), and a small request is mostly
start-up. Every other command line, help, ``--version`` and anything this parser is unsure of
(a repeated option, ``--count=5``, a value starting with ``-``, a count that is not plain
digits) goes to the click CLI in ``cli.py``, which owns every message about bad usage. Both
paths run ``command.generate_names`` with the same options: tests/test_launch.py holds
``quick_options`` to what click parses from the same words.
"""

from __future__ import annotations

import sys

from nametool.runtime.command import generate_names
from nametool.runtime.errors import NametoolError
from nametool.runtime.schema import DEFAULT_BATCH_SIZE, DEFAULT_COUNT, MAX_SEED

# What click gives ``generate`` when no option is set (tests/test_launch.py checks it against click)
GENERATE_DEFAULTS = {
    "model_path": None, "threads": None, "engine": "auto", "count": DEFAULT_COUNT, "temperature": None,
    "top_k": None, "top_p": None, "min_p": None, "seed": None, "min_len": None, "max_len": None, "prefix": "",
    "exclude": (), "exclude_file": None, "suffix": "", "contains": "", "unique": False, "novel": False,
    "batch_size": DEFAULT_BATCH_SIZE, "fmt": "text",
}
QUICK_OPTIONS = {"-n": "count", "--count": "count", "--seed": "seed", "--model": "model_path"}


def main() -> None:
    """The console script: the quick path where ``quick_options`` takes the words, else click."""
    options = quick_options(sys.argv[1:])
    if options is None:
        from nametool.runtime.cli import main as cli

        cli()
        return
    try:
        generate_names(options, model_path=options.pop("model_path"), threads=options.pop("threads"),
                       engine=options.pop("engine"))
    except NametoolError as exc:  # click prints it, as for cli.user_errors: only a failure imports click
        import click

        click.ClickException(str(exc)).show()
        sys.exit(1)
    except KeyboardInterrupt:
        import click

        click.echo(file=sys.stderr)
        click.echo("Aborted!", file=sys.stderr)
        sys.exit(1)


def quick_options(words: list[str]) -> dict | None:
    """``generate``'s options from these words, or None where click must parse them."""
    if not words or words[0] != "generate" or len(words) % 2 == 0:
        return None
    options, seen = dict(GENERATE_DEFAULTS), set()
    for flag, value in zip(words[1::2], words[2::2]):
        key = QUICK_OPTIONS.get(flag)
        if key is None or key in seen or not value or value.startswith("-"):
            return None
        seen.add(key)
        if key == "model_path":
            options[key] = value
            continue
        if not (value.isascii() and value.isdigit()) or len(value) > 20 or int(value) > MAX_SEED:  # click says why
            return None
        options[key] = int(value)
    return options
