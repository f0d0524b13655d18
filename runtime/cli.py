"""``nametool-run``: generate names on a device (onnxruntime + numpy, never torch)."""

from __future__ import annotations

import sys
from functools import wraps

import click

from nametool.runtime.errors import NametoolError


def user_errors(func):
    """Turn our errors into click's one-line ``Error: ...`` and exit status 1."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except NametoolError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


model_option = click.option(
    "--model", "model_path", type=click.Path(dir_okay=False), default=None,
    help="A nametool .onnx file. Default: the bundled model.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nametool")
def main() -> None:
    """Generate names from a nametool model file, with onnxruntime and numpy only."""


@main.command()
@model_option
@click.option("-n", "--count", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many names.")
@click.option("--temperature", type=click.FloatRange(min=0), default=None,
              help="Softmax temperature; 0 is greedy. Default: the model's (1.0).")
@click.option("--seed", type=int, default=None, help="Random seed; the same seed gives the same names.")
@click.option("--min-len", type=click.IntRange(min=1), default=None,
              help="Shortest name. Default: the model's training range.")
@click.option("--max-len", type=click.IntRange(min=1), default=None,
              help="Longest name (the end is forced there). Default: the model's training range.")
@click.option("--batch-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Names sampled together, one onnxruntime call per character position.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="onnxruntime intra-op threads.")
@user_errors
def generate(model_path, count, temperature, seed, min_len, max_len, batch_size, threads) -> None:
    """Sample names, one per line."""
    from nametool.runtime.model import NameModel

    model = NameModel.load(model_path, threads=threads)
    names = model.generate(count, temperature=temperature, seed=seed, min_len=min_len,
                           max_len=max_len, batch_size=batch_size)
    _write_lines(names)


def _write_lines(lines: list[str]) -> None:
    """Write UTF-8 lines whatever the locale; a closed pipe (``| head``) ends quietly."""
    out = sys.stdout.buffer if hasattr(sys.stdout, "buffer") else None
    try:
        if out is None:  # a text-only stream, as under click's test runner
            sys.stdout.write("".join(f"{line}\n" for line in lines))
        else:
            out.write("".join(f"{line}\n" for line in lines).encode("utf-8"))
            out.flush()
    except BrokenPipeError:
        _silence_broken_pipe()


def _silence_broken_pipe() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)
