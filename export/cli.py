"""``nametool export``: attached to the ``nametool`` group by name (train/cli.py), so that the
training package never imports this one. torch and onnx are imported only when it runs."""

from __future__ import annotations

from pathlib import Path

import click

from nametool.export import MIN_OPSET
from nametool.runtime.cli import user_errors
from nametool.train.commands import load_checkpoint_source


@click.command()
@click.argument("output", type=click.Path(dir_okay=False))
@click.option("--checkpoint", default=None,
              help="Checkpoint (or run folder) to export. Default: the newest under ./runs/")
@click.option("--opset", type=click.IntRange(min=MIN_OPSET), default=MIN_OPSET, show_default=True,
              help=f"ONNX opset ({MIN_OPSET} is also the minimum).")
@click.option("--form", type=click.Choice(["exact", "float"]), default="exact", show_default=True,
              help="exact: integers and lookup tables, the same names bit for bit on every device "
                   "(docs/exact.md); float: float32 weights for other ONNX tools.")
@click.option("--quantize", type=click.Choice(["int8"]), default=None,
              help="Float form: store the weights as int8 (one scale per output channel, fp32 compute), "
                   "within documented drift bounds.")
@click.option("--no-fold", "no_fold", is_flag=True,
              help="Float form: keep the lecture's first layer (embedding, concatenation, matrix product) instead of "
                   "folding the embedding into per-position tables: for teaching and comparison.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@user_errors
def export(output, checkpoint, form, opset, quantize, no_fold, force):
    """Write OUTPUT (.onnx): the model with its vocabulary and config in the file's metadata."""
    path, ckpt = load_checkpoint_source(checkpoint)
    from nametool.export.onnx_export import export_onnx

    if form == "exact" and (quantize or no_fold):
        raise click.UsageError("--quantize and --no-fold apply to the float form: add --form float")
    report = export_onnx(ckpt, Path(output), form=form, opset=opset, quantize=quantize, fold=not no_fold,
                         force=force)
    click.echo(f"exported {path} -> {report.path} ({report.size_bytes / 1024:.1f} KiB, {form} form)")
    if form == "exact":
        q = report.quantization
        click.echo(f"exact: PyTorch, onnxruntime and numpy give the same integers on {report.contexts_checked} "
                   f"validation contexts; val loss {q.val_loss_fp32:.4f} float -> {q.val_loss:.4f} exact "
                   f"(limit +{q.max_val_loss_increase}), mean KL {q.mean_kl:.5f} nats")
        return
    if report.quantization is None:
        click.echo(f"parity: onnxruntime vs PyTorch on {report.contexts_checked} validation contexts, "
                   f"max |dp| = {report.max_abs_diff:.2e}")
        return
    q = report.quantization
    click.echo(f"int8: {report.size_bytes / 1024:.1f} KiB against {report.fp32_size_bytes / 1024:.1f} KiB fp32; "
               f"on {report.contexts_checked} validation windows mean KL {q.mean_kl:.5f} nats "
               f"(limit {q.max_mean_kl}), val loss {q.val_loss_fp32:.4f} -> {q.val_loss:.4f} "
               f"(limit +{q.max_val_loss_increase})")
