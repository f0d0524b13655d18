"""The ``nametool`` commands beside ``train``: sample (the PyTorch reference), eval and plot, and the
one rule by which every ``nametool`` command reads its MODEL argument (``resolve_source``).

torch is imported only inside the commands that need it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from nametool.runtime.cli import SEED, sampling_options, user_errors
from nametool.runtime.command import request_from
from nametool.runtime.errors import NametoolError
from nametool.runtime.output import write_names

TRAIN_EXTRA = "pip install 'nametool[train]'"
RUNS_DIR = Path("runs")


def require_torch() -> None:
    try:
        import torch  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(f"{exc.name} is not installed; training and export need: {TRAIN_EXTRA}") from None


def resolve_source(spec: str | None, *, checkpoint_only: bool = False) -> tuple[str, Path]:
    """What a command's MODEL argument names: ``("model", path)`` or ``("checkpoint", path)``.

    The one rule for every ``nametool`` command: a ``.onnx`` path or a bundled model's name
    (``default``, ``lecture``, ...) is a model file, resolved as ``nametool-run`` resolves it;
    a run folder means its ``model.pt``; any other path is a checkpoint; nothing means the
    newest checkpoint under ./runs/. Commands that need the training side refuse model files.
    """
    from nametool.runtime.model import bundled_models, resolve_model

    if spec is None:
        from nametool.train.checkpoint import newest_checkpoint

        return "checkpoint", newest_checkpoint(RUNS_DIR)
    path = Path(spec)
    is_model = path.suffix == ".onnx" or (not path.exists() and spec in bundled_models())
    if is_model and checkpoint_only:
        raise NametoolError(f"{spec}: is a model file; this command needs a training checkpoint (a .pt file "
                            "or a run folder)")
    if is_model:
        return "model", resolve_model(spec)
    if not path.exists():
        raise NametoolError(f"{spec}: no such checkpoint, run folder or model file, nor a bundled model "
                            f"(bundled: {', '.join(bundled_models())})")
    return "checkpoint", path / "model.pt" if path.is_dir() else path


def load_source(spec: str | None):
    """(path, Source) of a model file or a checkpoint, per ``resolve_source``."""
    from nametool.train.evaluate import Source

    kind, path = resolve_source(spec)
    if kind == "model":
        from nametool.runtime.model import NameModel
        from nametool.train.evaluate import splits_from_meta

        model = NameModel.load(path)
        return path, Source(model.logits, model.meta, splits_from_meta(model.meta), model.sampling_logits)
    require_torch()
    from nametool.train.checkpoint import load_checkpoint
    from nametool.train.reference import torch_logits_fn

    ckpt = load_checkpoint(path)
    return path, Source(torch_logits_fn(ckpt), ckpt.meta, ckpt.splits)


def load_checkpoint_source(spec: str | None):
    """(path, checkpoint) for the commands that need the training side."""
    require_torch()
    from nametool.train.checkpoint import load_checkpoint

    _, path = resolve_source(spec, checkpoint_only=True)
    return path, load_checkpoint(path)


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint (or run folder) to sample. Default: the newest under ./runs/")
@sampling_options
@user_errors
def sample(checkpoint, **options):
    """Sample names with PyTorch: the reference that nametool-run generate must equal, seed for seed."""
    from nametool.runtime import generation
    from nametool.train.reference import sample_with_torch, torch_logits_fn

    _, ckpt = load_checkpoint_source(checkpoint)
    request, seed, fmt = request_from(options)
    names = sample_with_torch(ckpt, request, seed)
    write_names(names, fmt, lambda batch: generation.score(torch_logits_fn(ckpt), ckpt.meta, batch))


@click.command("eval")
@click.argument("source", required=False, metavar="[MODEL]")
@click.option("--samples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Names to generate for the sample-quality figures (0: skip).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the generated names.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def evaluate(source, samples, seed, as_json):
    """Losses, baselines and sample quality of MODEL: a checkpoint or run folder, a model file (.onnx)
    or a bundled model's name.

    Default: the newest checkpoint under ./runs/. Both kinds give the same numbers.
    """
    from nametool.train.evaluate import evaluate, format_report

    _, found = load_source(source)
    report = evaluate(found, samples=samples, seed=seed)
    click.echo(json.dumps(report, ensure_ascii=False, indent=1) if as_json else format_report(report), nl=as_json)


@click.group()
def plot():
    """Pictures (PNG, needs the plot extra): loss curves, embeddings, next-character bars."""


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException("matplotlib is not installed; plots need: pip install 'nametool[plot]'") from None


out_option = click.option("--out", type=click.Path(dir_okay=False), default=None,
                          help="PNG to write. Default: beside the checkpoint (a bundled model: here).")
force_option = click.option("--force", is_flag=True, help="Replace --out if it exists.")


def _default_out(path: Path, name: str) -> Path:
    """Beside the checkpoint or model file, but never inside the installed package."""
    from nametool.runtime.model import bundled_models

    return Path(name) if path in bundled_models().values() else path.with_name(name)


@plot.command("loss")
@click.argument("run", required=False)
@out_option
@force_option
@user_errors
def plot_loss_command(run, out, force):
    """Train and val loss over steps for RUN (a run folder or checkpoint; default: the newest)."""
    _require_matplotlib()
    path, ckpt = load_checkpoint_source(run)
    from nametool.train.plots import plot_loss

    if not ckpt.history["step"]:
        raise click.ClickException(f"{path}: no evaluations recorded yet")
    m = ckpt.meta.model
    title = f"{path.parent.name}: {m.describe()}"
    target = Path(out) if out else path.with_name("loss.png")
    plot_loss(ckpt.history, title, target, members=m.members, force=force)
    click.echo(f"wrote {target}")


@plot.command("embeddings")
@click.argument("run", required=False)
@out_option
@force_option
@user_errors
def plot_embeddings_command(run, out, force):
    """The learned character embeddings in 2-D (PCA unless they are 2-D), labelled."""
    _require_matplotlib()
    path, ckpt = load_checkpoint_source(run)
    from nametool.train.plots import plot_embeddings

    weights = ckpt.model.embedding.detach().numpy()
    target = Path(out) if out else path.with_name("embeddings.png")
    members = ckpt.meta.model.members
    title = "Character embeddings" + (f" (the first of {members} members)" if members > 1 else "")
    separation = plot_embeddings(weights, ckpt.meta.vocab.itos(), title, target, force=force)
    click.echo(f"wrote {target}" + ("" if separation is None else
               f" (vowels: mean distance to consonants / to each other = {separation:.2f})"))


@plot.command("next")
@click.argument("source", required=False, metavar="[MODEL]")
@click.option("--context", default="", help="The characters so far (default: the start of a name).")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Bars to show (default: all).")
@out_option
@force_option
@user_errors
def plot_next_command(source, context, top, out, force):
    """Bar chart of P(next character | --context) from a checkpoint, a model file or a bundled model."""
    _require_matplotlib()
    from nametool.runtime.model import next_char_distribution
    from nametool.train.plots import plot_next

    path, found = load_source(source)
    meta = found.meta
    dist = next_char_distribution(found.logits, meta, context)
    target = Path(out) if out else _default_out(path, f"next-{context or 'start'}.png")
    plot_next(dist, context, meta.vocab.end_token, path.name, target, top=top, force=force)
    click.echo(f"wrote {target}")
