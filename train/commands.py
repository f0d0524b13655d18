"""The ``nametool`` commands beside ``train``: export, sample (the PyTorch reference) and eval.

torch is imported only inside the commands that need it.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from nametool.runtime.cli import SEED, request_from, sampling_options, user_errors, write_names

TRAIN_EXTRA = "pip install 'nametool[train]'"
RUNS_DIR = Path("runs")


def require_torch() -> None:
    try:
        import torch  # noqa: F401
        import onnx  # noqa: F401
    except ImportError as exc:
        raise click.ClickException(f"{exc.name} is not installed; training and export need: {TRAIN_EXTRA}") from None


def _model_file(source: str | None) -> Path | None:
    """SOURCE as a model file (a ``.onnx`` path or a bundled model's name), or None for a checkpoint."""
    if source is None:
        return None
    if Path(source).suffix == ".onnx":
        return Path(source)
    from nametool.runtime.model import bundled_models

    return bundled_models().get(source) if not Path(source).exists() else None


def _run_checkpoint(run: str | None) -> Path:
    """A checkpoint path from a checkpoint, a run folder, or nothing (the newest run)."""
    from nametool.train.checkpoint import newest_checkpoint

    if run is None:
        return newest_checkpoint(RUNS_DIR)
    path = Path(run)
    return path / "model.pt" if path.is_dir() else path


@click.command()
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint to export. Default: the newest under ./runs/")
@click.option("--opset", type=click.IntRange(min=18), default=18, show_default=True,
              help="ONNX opset (18 is also the minimum).")
@click.option("--quantize", type=click.Choice(["int8"]), default=None,
              help="Quantize the weights (onnxruntime dynamic int8), within documented drift bounds.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@user_errors
def export(output, checkpoint, opset, quantize, force):
    """Write OUTPUT (.onnx): the model with its vocabulary and config in the file's metadata."""
    require_torch()
    from nametool.export.onnx_export import export_onnx
    from nametool.train.checkpoint import load_checkpoint

    path = _run_checkpoint(checkpoint)
    report = export_onnx(load_checkpoint(path), Path(output), opset=opset, quantize=quantize, force=force)
    click.echo(f"exported {path} -> {report.path} ({report.size_bytes / 1024:.1f} KiB)")
    if report.quantization is None:
        click.echo(f"parity: onnxruntime vs PyTorch on {report.contexts_checked} validation contexts, "
                   f"max |dp| = {report.max_abs_diff:.2e}")
        return
    q = report.quantization
    click.echo(f"int8: {report.size_bytes / 1024:.1f} KiB against {report.fp32_size_bytes / 1024:.1f} KiB fp32; "
               f"on {report.contexts_checked} validation windows mean KL {q.mean_kl:.4f} nats "
               f"(limit {q.max_mean_kl}), val loss {q.val_loss_fp32:.4f} -> {q.val_loss:.4f} "
               f"(limit +{q.max_val_loss_increase})")


@click.command()
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Checkpoint to sample. Default: the newest under ./runs/")
@sampling_options
@user_errors
def sample(checkpoint, **options):
    """Sample names with PyTorch: the reference that nametool-run generate must equal, seed for seed."""
    require_torch()
    from nametool.runtime import generation
    from nametool.train.checkpoint import load_checkpoint
    from nametool.train.reference import sample_with_torch, torch_logits_fn

    ckpt = load_checkpoint(_run_checkpoint(checkpoint))
    request, seed, fmt = request_from(options)
    names = sample_with_torch(ckpt, request, seed)
    write_names(names, fmt, lambda batch: generation.score(torch_logits_fn(ckpt), ckpt.meta, batch))


@click.command("eval")
@click.argument("source", required=False, type=click.Path(dir_okay=False))
@click.option("--samples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Names to generate for the sample-quality figures (0: skip).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the generated names.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def evaluate(source, samples, seed, as_json):
    """Losses, baselines and sample quality of SOURCE: a checkpoint, a model file (.onnx) or a bundled model.

    Default: the newest checkpoint under ./runs/. Both kinds give the same numbers.
    """
    from nametool.train.evaluate import Source, evaluate, format_report, splits_from_meta

    path = _model_file(source)
    if path is not None:
        from nametool.runtime.model import NameModel

        model = NameModel.load(path)
        src = Source(model.logits, model.meta, splits_from_meta(model.meta))
    else:
        require_torch()
        from nametool.train.checkpoint import load_checkpoint
        from nametool.train.reference import torch_logits_fn

        ckpt = load_checkpoint(_run_checkpoint(source))
        src = Source(torch_logits_fn(ckpt), ckpt.meta, ckpt.splits)
    report = evaluate(src, samples=samples, seed=seed)
    click.echo(json.dumps(report, ensure_ascii=False, indent=1) if as_json else format_report(report), nl=as_json)


@click.group()
def plot():
    """Pictures (PNG, needs the plot extra): loss curves, embeddings, next-character bars."""


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException("matplotlib is not installed; plots need: pip install 'nametool[plot]'") from None


def _load_run(run: str | None):
    """(path, checkpoint) for the plots that need the training side."""
    require_torch()
    _require_matplotlib()
    from nametool.train.checkpoint import load_checkpoint

    path = _run_checkpoint(run)
    return path, load_checkpoint(path)


out_option = click.option("--out", type=click.Path(dir_okay=False), default=None,
                          help="PNG to write. Default: beside the checkpoint or model.")
force_option = click.option("--force", is_flag=True, help="Replace --out if it exists.")


@plot.command("loss")
@click.argument("run", required=False)
@out_option
@force_option
@user_errors
def plot_loss_command(run, out, force):
    """Train and val loss over steps for RUN (a run folder or checkpoint; default: the newest)."""
    path, ckpt = _load_run(run)
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
    path, ckpt = _load_run(run)
    from nametool.train.plots import plot_embeddings

    weights = ckpt.model.embedding.detach().numpy()
    target = Path(out) if out else path.with_name("embeddings.png")
    members = ckpt.meta.model.members
    title = "Character embeddings" + (f" (the first of {members} members)" if members > 1 else "")
    separation = plot_embeddings(weights, ckpt.meta.vocab.itos(), title, target, force=force)
    click.echo(f"wrote {target}" + ("" if separation is None else
               f" (vowels: mean distance to consonants / to each other = {separation:.2f})"))


@plot.command("next")
@click.argument("source", required=False)
@click.option("--context", default="", help="The characters so far (default: the start of a name).")
@click.option("--top", type=click.IntRange(min=1), default=None, help="Bars to show (default: all).")
@out_option
@force_option
@user_errors
def plot_next_command(source, context, top, out, force):
    """Bar chart of P(next character | --context) from a checkpoint or a model file."""
    _require_matplotlib()
    from nametool.train.plots import plot_next

    path = Path(source) if source else None
    if path is not None and path.suffix == ".onnx":
        from nametool.runtime.model import NameModel

        model = NameModel.load(path)
        dist, end = model.next_char_distribution(context), model.vocab.end_token
    else:
        require_torch()
        from nametool.runtime.model import next_char_distribution
        from nametool.train.checkpoint import load_checkpoint
        from nametool.train.reference import torch_logits_fn

        path = _run_checkpoint(source)
        ckpt = load_checkpoint(path)
        dist = next_char_distribution(torch_logits_fn(ckpt), ckpt.meta, context)
        end = ckpt.meta.vocab.end_token
    target = Path(out) if out else path.with_name(f"next-{context or 'start'}.png")
    plot_next(dist, context, end, path.name, target, top=top, force=force)
    click.echo(f"wrote {target}")
