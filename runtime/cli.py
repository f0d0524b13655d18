"""``nametool-run``: generate names on a device (onnxruntime + numpy, never torch)."""

from __future__ import annotations

import io
import json
import os
import sys
from functools import wraps
from pathlib import Path

import click

from nametool.runtime.command import MANY_NAMES, generate_names
from nametool.runtime.errors import NametoolError
from nametool.runtime.output import write_text
from nametool.runtime.schema import DEFAULT_BATCH_SIZE, DEFAULT_COUNT, MAX_SEED


def user_errors(func):
    """Turn our errors into click's one-line ``Error: ...`` and exit status 1."""

    @wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except NametoolError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


SEED = click.IntRange(0, MAX_SEED)


def utf8_argument(ctx, param, value):
    """Arguments as UTF-8 even where Python decoded argv with another encoding (a C locale, UTF-8 mode off)."""
    if value is None:
        return value
    if isinstance(value, tuple):
        return tuple(utf8_argument(ctx, param, v) for v in value)
    try:
        return os.fsencode(value).decode("utf-8")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{value!r} is not UTF-8 text") from None


def sampling_options(func):
    """The options of ``generate``, shared with the PyTorch reference ``nametool sample``."""
    options = [
        click.option("-n", "--count", type=click.IntRange(min=0), default=DEFAULT_COUNT, show_default=True,
                     help="How many names."),
        click.option("--temperature", type=click.FloatRange(min=0), default=None,
                     help="Softmax temperature; 0 is greedy. Default: the model's (1.0)."),
        click.option("--top-k", type=click.IntRange(min=1), default=None,
                     help="Sample only among the k most likely characters."),
        click.option("--top-p", type=click.FloatRange(min=0, max=1, min_open=True), default=None,
                     help="Nucleus sampling: the smallest most-likely set reaching mass p."),
        click.option("--min-p", type=click.FloatRange(min=0, max=1), default=None,
                     help="Drop characters less likely than this share of the most likely one (after top-p)."),
        click.option("--seed", type=SEED, default=None, help="Random seed; the same seed gives the same names."),
        click.option("--min-len", type=click.IntRange(min=1), default=None,
                     help="Shortest name (the end token is masked before). Default: the training range."),
        click.option("--max-len", type=click.IntRange(min=1), default=None,
                     help="Longest name (the end token is forced there). Default: the training range."),
        click.option("--prefix", default="", callback=utf8_argument, help="Names start with these characters."),
        click.option("--exclude", multiple=True, callback=utf8_argument, metavar="WORD",
                     help="No name contains WORD (repeat for several); characters that would complete one "
                          "are masked."),
        click.option("--exclude-file", type=click.Path(dir_okay=False), default=None,
                     help="Words no name may contain, one per line (# starts a comment)."),
        click.option("--suffix", default="", callback=utf8_argument,
                     help="Names end with these characters (drawn from the model, kept if they match)."),
        click.option("--contains", default="", callback=utf8_argument,
                     help="Names contain these characters (drawn from the model, kept if they match)."),
        click.option("--unique", is_flag=True, help="No name twice in the output."),
        click.option("--novel", is_flag=True, help="No name of the training data (checked in the model file)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True,
                     help="Names sampled together: one model call per character position."),
        click.option("--format", "fmt", type=click.Choice(["text", "json", "jsonl", "csv"]), default="text",
                     show_default=True, help="json, jsonl and csv add each name's log-probability under the model."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


model_option = click.option(
    "--model", "model_path", default=None, metavar="PATH|NAME",
    help="A nametool .onnx file, or a bundled model by name (see 'models'). Default: the bundled default.",
)
engine_option = click.option(
    "--engine", type=click.Choice(["auto", "onnxruntime", "numpy"]), default="auto", show_default=True,
    help="What runs the model: onnxruntime, or numpy alone (for devices without onnxruntime). auto: "
         f"numpy for small requests (generate or score of fewer than {MANY_NAMES:,} names, predict, info, verify), "
         "which start faster, and onnxruntime, where installed, for large ones and files numpy cannot run. "
         "Same names either way.",
)
threads_option = click.option("--threads", type=click.IntRange(min=1), default=None,
                              help="onnxruntime intra-op threads. Default: one per available core for "
                                   f"{MANY_NAMES:,} names or more, else 1.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nametool")
def main() -> None:
    """Generate names from a nametool model file, with onnxruntime and numpy only."""


@main.command()
@model_option
@sampling_options
@threads_option
@engine_option
@user_errors
def generate(model_path, threads, engine, **options) -> None:
    """Sample names, one per line."""
    generate_names(options, model_path=model_path, threads=threads, engine=engine)


@main.command()
@click.argument("context", default="", callback=utf8_argument)
@model_option
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Rows to show.")
@click.option("--temperature", type=click.FloatRange(min=0), default=1.0, show_default=True)
@engine_option
@user_errors
def predict(context, model_path, top, temperature, engine) -> None:
    """The next-character distribution after CONTEXT (empty: the first character)."""
    from nametool.runtime.model import NameModel

    model = NameModel.load(model_path, engine=engine, large=False)
    dist = model.next_char_distribution(context, temperature=temperature)
    end = model.vocab.end_token
    lines = [f"next after {context!r}:"]
    for char, prob in list(dist.items())[:top]:
        label = f"{char} (end)" if char == end else char
        lines.append(f"  {label:8s} {prob:7.2%}  {'#' * round(prob * 40)}")
    write_text("\n".join(lines) + "\n")


@main.command()
@click.argument("names", nargs=-1, callback=utf8_argument)
@model_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@engine_option
@user_errors
def score(names, model_path, fmt, engine) -> None:
    """Log-likelihood, per-character probabilities and perplexity of NAMES (or stdin lines)."""
    from nametool.runtime.model import NameModel

    if not names:
        raw = sys.stdin.buffer.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise click.ClickException(f"stdin: not UTF-8 text (bad byte at offset {exc.start})") from None
        names = tuple(line for line in text.splitlines() if line.strip())
    if not names:
        raise click.UsageError("give names as arguments or one per line on stdin")
    model = NameModel.load(model_path, engine=engine, large=len(names) >= MANY_NAMES)
    scores = model.score(list(names))
    if fmt == "json":
        rows = [{"name": s.name, "log_likelihood": round(s.log_likelihood, 6),
                 "perplexity": round(s.perplexity, 6), "char_probs": [round(p, 6) for p in s.char_probs]}
                for s in scores]
        write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
        return
    end = model.vocab.end_token
    lines = []
    for s in scores:
        chars = " ".join(f"{c}:{p:.2f}" for c, p in zip([*s.name, end], s.char_probs))
        lines.append(f"{s.name}\tlog-likelihood {s.log_likelihood:.3f}\tperplexity {s.perplexity:.2f}\t{chars}")
    write_text("\n".join(lines) + "\n")


def _form_line(facts: dict) -> str:
    if facts["form"] != "exact":
        return "float: near-identical names across engines and devices"
    bounds = ", ".join(f"{layer} {bound:,}" for layer, bound in facts["bounds"].items())
    return f"exact: integers and tables, the same names on every device; partial sums up to {bounds} (below 2^24)"


@main.command()
@click.argument("model_path", required=False, metavar="[MODEL]")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@engine_option
@user_errors
def info(model_path, as_json, engine) -> None:
    """Summarise MODEL (default: the bundled one): vocabulary, sizes, losses, provenance."""
    from nametool.runtime.summary import summary
    from nametool.runtime.model import NameModel

    facts = summary(NameModel.load(model_path, engine=engine, large=False))
    if as_json:
        write_text(json.dumps(facts, ensure_ascii=False, indent=1) + "\n")
        return
    write_text(format_summary(facts))


def format_summary(f: dict) -> str:
    m, p, s, v = f["model"], f["provenance"], f["sampling"], f["vocab"]
    loss = "  ".join(f"{k} {p[k + '_loss']:.4f}" for k in ("train", "val", "test") if p[k + "_loss"] is not None)
    lines = [
        f"model        {f['path']} ({f['file_bytes'] / 1024:.1f} KiB, schema {f['schema_version']})",
        f"engine       {f['engine']}",
        f"form         {_form_line(f)}",
        f"vocabulary   {v['size']}: {v['chars']} + end {v['end_token']!r}",
        f"network      {m['description']}; {m['parameters']:,} parameters; first layer {f['first_layer']}",
        f"sampling     temperature {s['temperature']}, length {s['min_len']}-{s['max_len']}",
        f"loss         {loss} (nats/char)",
        f"data         {p['dataset']} ({p['name_count']:,} names, sha256 {p['dataset_sha256'][:12]}...), "
        f"split seed {p['seed']}",
        f"training     {p['steps']:,} steps" + (f" in {p['train_seconds']:.1f} s" if p["train_seconds"] else "")
        + f"; nametool {p['nametool_version']}, torch {p['torch_version']}, onnx {p['onnx_version']}",
        f"created      {p['created']}, exported {p['exported']}",
        f"novel check  {f['known_names']:,} training names" if f["known_names"] else "novel check  none",
        f"self-test    {f['golden_contexts']} golden contexts" if f["golden_contexts"] else "self-test    none",
    ]
    q = f["quantization"]
    if q:
        label = "from float" if f["form"] == "exact" else "quantized"
        lines.append(f"{label:12s} {q['scheme']}: mean KL {q['mean_kl']:.5f} nats, val loss "
                     f"{q['val_loss_fp32']:.4f} -> {q['val_loss']:.4f}")
    if f["data_notice"]:
        lines.append(f"data notice  {len(f['data_notice']):,} characters of credits and licences (--json shows them)")
    return "\n".join(lines) + "\n"


@main.command()
@click.argument("model_path", required=False, metavar="[MODEL]")
@engine_option
@user_errors
def verify(model_path, engine) -> None:
    """Check MODEL is the file export wrote (digests of weights, graph and metadata) and that this
    device computes its golden next-char distributions as the exporting one did."""
    from nametool.runtime.verify import verify as run_verify
    from nametool.runtime.model import NameModel

    model = NameModel.load(model_path, engine=engine, large=False)
    report = run_verify(model)
    if not report.ok:
        raise click.ClickException(f"{model.path}: verify failed: {report.message}")
    write_text(f"{model.path}: ok ({report.message})\n")


@main.command()
@model_option
@click.option("--member", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which member's table, for a model of several (each learned its own).")
@click.option("--nearest", "near", default=None, callback=utf8_argument, metavar="CHAR",
              help="List the characters closest to CHAR, by cosine similarity and by distance.")
@click.option("--analogy", default=None, callback=utf8_argument, metavar="A:B::C:?",
              help="Which character is to C what B is to A: the closest to E[B] - E[A] + E[C].")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Characters listed by --nearest and --analogy.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text", show_default=True)
@user_errors
def embeddings(model_path, member, near, analogy, top, fmt) -> None:
    """The learned character embeddings, read from the model file (no onnxruntime needed)."""
    from nametool.runtime import embeddings as emb
    from nametool.runtime.model import NameModel

    model = NameModel.load(model_path, engine="numpy")
    table, itos = model.embeddings(member), model.vocab.itos()
    members = model.meta.model.members
    title = f"member {member} of {members}" if members > 1 else "the model's table"
    if analogy is not None:
        a, b, c = emb.parse_analogy(analogy)
        found = emb.analogy(table, itos, a, b, c, top)
        if fmt == "json":
            write_text(json.dumps({"analogy": analogy, "member": member,
                                   "answers": [{"char": ch, "cosine": round(v, 6)} for ch, v in found]},
                                  ensure_ascii=False, indent=1) + "\n")
            return
        lines = [f"{a}:{b}::{c}:? ({title}), closest to E[{b}] - E[{a}] + E[{c}] by cosine:"]
        lines += [f"  {ch}  {v:+.3f}" for ch, v in found]
        write_text("\n".join(lines) + "\n")
        return
    if near is not None:
        found = emb.nearest(table, itos, near, top)
        if fmt == "json":
            write_text(json.dumps({"char": near, "member": member, **{k: [{"char": ch, "value": round(v, 6)}
                                   for ch, v in rows] for k, rows in found.items()}}, ensure_ascii=False,
                                  indent=1) + "\n")
            return
        lines = [f"closest to {near!r} ({title}):", "  cosine similarity      euclidean distance"]
        for (c1, v1), (c2, v2) in zip(found["cosine"], found["euclidean"]):
            lines.append(f"  {c1}  {v1:+.3f}              {c2}  {v2:.3f}")
        write_text("\n".join(lines) + "\n")
        return
    write_table(table, itos, fmt)


def write_table(table, itos, fmt: str) -> None:
    if fmt == "json":
        rows = {ch: [round(float(v), 6) for v in row] for ch, row in zip(itos, table)}
        write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
        return
    if fmt == "csv":
        import csv

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["char", *[f"d{i}" for i in range(table.shape[1])]])
        writer.writerows([ch, *[f"{v:.6f}" for v in row]] for ch, row in zip(itos, table))
        write_text(buffer.getvalue())
        return
    write_text("".join(f"{ch}  " + " ".join(f"{v:+.2f}" for v in row) + "\n" for ch, row in zip(itos, table)))


@main.command()
@click.argument("out_dir", type=click.Path(path_type=Path), metavar="OUT_DIR")
@click.option("--model", "model_path", default=None, metavar="NAME|PATH",
              help="A nametool .onnx file, or a bundled model by name (default: the bundled default).")
@click.option("--engine", "site_engine", type=click.Choice(["js", "onnxruntime-web"]), default=None,
              help="What runs the model in the page: js (the page's own engine, exact files only, no "
                   "onnxruntime-web in the site) or onnxruntime-web (its 14 MB wasm build copied in; "
                   "float files need it). Default: js for an exact file, onnxruntime-web for a float one.")
@click.option("--ort-dir", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="onnxruntime-web's files (its dist folder, or an npm tree holding it); "
                   "default: found on this machine, else fetched once with npm.")
@click.option("--force", is_flag=True, help="Replace OUT_DIR if it exists.")
@user_errors
def web(out_dir, model_path, site_engine, ort_dir, force) -> None:
    """Write a static site to OUT_DIR that runs the model in a browser tab, offline: names,
    next-character bars, the embedding map. Serve it with any static server, e.g.
    `python -m http.server -d OUT_DIR`; scripts can use its API, window.nametool."""
    from nametool.runtime.website import build_site

    files = build_site(out_dir, model_path, engine=site_engine, ort_dir=ort_dir, force=force)
    size = sum(f.stat().st_size for f in files)
    write_text(f"wrote {out_dir}: {len(files)} files, {size / 1e6:.1f} MB; "
               f"serve it with: python -m http.server -d {out_dir}\n")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@engine_option
@user_errors
def models(as_json, engine) -> None:
    """The bundled models: size, parameters, test loss and generation speed (measured now, one thread)."""
    import time

    from nametool.runtime.model import NameModel, bundled_models

    rows = []
    for name, path in bundled_models().items():
        model = NameModel.load(path, threads=1, engine=engine)
        model.generate(200, seed=0)  # warm-up
        start = time.perf_counter()
        model.generate(4000, seed=0, batch_size=4096)
        speed = 4000 / (time.perf_counter() - start)
        m = model.meta.model
        rows.append({"name": name, "file_bytes": path.stat().st_size,
                     "parameters": m.parameter_count(len(model.vocab)),
                     "config": m.describe(),
                     "form": model.form,
                     "int8": model.meta.quantization is not None and model.form == "float",
                     "test_loss": model.meta.provenance.test_loss, "names_per_second": round(speed)})
    if as_json:
        write_text(json.dumps(rows, indent=1) + "\n")
        return
    lines = [f"{'name':14s} {'form':5s} {'size':>9s} {'params':>9s} {'test loss':>9s} {'names/s':>9s}  configuration"]
    for r in rows:
        lines.append(f"{r['name']:14s} {r['form']:5s} {r['file_bytes'] / 1024:7.0f}Ki {r['parameters']:9,} "
                     f"{r['test_loss']:9.4f} {r['names_per_second']:9,}  {r['config']}"
                     + (" (int8)" if r["int8"] else ""))
    write_text("\n".join(lines) + "\n")
