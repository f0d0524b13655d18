"""The site `nametool-run web` writes, in a real headless browser (Debian's chromium via Playwright).

Served from loopback with every other address refused: the page must carry all it needs.
Two sites: one written with ``--engine onnxruntime-web`` (float files, and exact files on
either engine), one with ``--engine js`` for an exact file (no onnxruntime-web in it).
Skipped, with the reason shown by ``pytest -ra``, where chromium, Playwright or
onnxruntime-web's files (``cd web && npm ci``) are missing; ``.ci/run`` installs all three.
The exact-file tests also need torch, to train their model.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from nametool.runtime import NameModel
from nametool.runtime.model import bundled_models, encode_contexts
from nametool.runtime.sampling import next_char_probs
from nametool.runtime.website import build_site, find_ort_web

CHROMIUM = os.environ.get("NAMETOOL_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update"]
PARITY = 1e-5  # max |dp| between the page and Python's onnxruntime (the bound)
BUNDLED = list(bundled_models())
FLOAT = [name for name, path in bundled_models().items() if NameModel.load(path, engine="numpy").form == "float"]
ENGINES = ["js", "onnxruntime-web"]
EXACT = "pair"  # the exact model the tests train, as served: pair.onnx (and its float form pair-float.onnx)
MANY = 100_000  # names compared with the CLI's on the exact file, per engine

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None


def _ort_dist():
    try:
        return find_ort_web(fetch=False)
    except Exception:
        return None


pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"chromium is not installed at {CHROMIUM} "
                       "(apt-get install chromium)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(_ort_dist() is None, reason="onnxruntime-web is not installed (cd web && npm ci)"),
]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(folder: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(out, "default", engine="onnxruntime-web")
    for name, path in bundled_models().items():
        shutil.copyfile(path, out / f"{name}.onnx")
    server, base = serve(out)
    yield out, base
    server.shutdown()


@pytest.fixture(scope="module")
def exact_files(tmp_path_factory):
    """A small two-member, two-layer model on the tiny names: (exact file, its float form)."""
    pytest.importorskip("torch")
    from nametool.export.onnx_export import export_onnx
    from nametool.runtime.schema import ModelConfig
    from nametool.train.config import TrainConfig
    from nametool.train.data import load_names
    from nametool.train.training import run_training

    from tests.conftest import TINY_NAMES

    folder = tmp_path_factory.mktemp("pair")
    result = run_training(load_names(TINY_NAMES), ModelConfig(context_size=3, embed_dim=8, hidden=(48, 32), members=2),
                          TrainConfig(steps=120, batch_size=64, lr=1e-2, warmup=10, eval_every=120, seed=5),
                          folder / "model.pt")
    exact, float_form = folder / f"{EXACT}.onnx", folder / f"{EXACT}-float.onnx"
    export_onnx(result.checkpoint, exact)
    export_onnx(result.checkpoint, float_form, form="float")
    return exact, float_form


@pytest.fixture(scope="module")
def exact_site(site, exact_files):
    """The onnxruntime-web site, serving the exact file too."""
    shutil.copyfile(exact_files[0], site[0] / exact_files[0].name)
    return site


@pytest.fixture(scope="module")
def js_site(tmp_path_factory, exact_files):
    """`nametool-run web` for the exact file with its default engine, js; the float form beside it."""
    out = tmp_path_factory.mktemp("js-site") / "site"
    build_site(out, exact_files[0])
    shutil.copyfile(exact_files[1], out / exact_files[1].name)
    server, base = serve(out)
    yield out, base
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(site, browser):
    """A page of a site for one model; records what it asked for beyond the server, and its errors."""
    pages = []

    def open_(model: str = "default", wait: bool = True, engine: str | None = None, base: str = site[1]):
        page = browser.new_page()
        page.outside, page.errors, page.fetched = [], [], []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))

        def route(r):
            if r.request.url.startswith(base):
                page.fetched.append(r.request.url[len(base):].split("?")[0])
                return r.continue_()
            page.outside.append(r.request.url)
            return r.abort()

        page.route("**/*", route)
        page.goto(f"{base}index.html?model={model}.onnx" + (f"&engine={engine}" if engine else ""))
        if wait:
            page.evaluate("window.nametool.ready")
        pages.append(page)
        return page

    yield open_
    for page in pages:
        page.close()


def page_probs(page, model: NameModel, contexts: list[str]) -> np.ndarray:
    """P(next id | context) from the page, in id order."""
    rows = page.evaluate("cs => Promise.all(cs.map(c => window.nametool.next(c)))", contexts)
    ids = {c: i for i, c in enumerate(model.vocab.itos())}
    out = np.zeros((len(contexts), len(ids)))
    for r, row in enumerate(rows):
        for entry in row:
            out[r, ids[entry["char"]]] = entry["p"]
    return out


def some_contexts(model: NameModel, count: int) -> list[str]:
    rng = np.random.default_rng(3)
    chars = model.vocab.chars
    return ["".join(rng.choice(chars, size=rng.integers(0, model.context_size + 3))) for _ in range(count)]


@pytest.mark.parametrize("name", FLOAT)
def test_the_page_gives_onnxruntimes_distributions(open_page, name):
    model = NameModel.load(name, engine="onnxruntime")
    page = open_page(name)
    contexts = list(model.meta.golden.contexts) + some_contexts(model, 150)
    expected = next_char_probs(model.logits(encode_contexts(model.meta, contexts)))
    got = page_probs(page, model, contexts)
    assert np.abs(got - expected).max() <= PARITY
    assert not page.outside and not page.errors


REQUESTS = [  # (page options, Python keyword options)
    ({"count": 300, "seed": 7}, {"seed": 7}),
    ({"count": 150, "seed": 1, "temperature": 0.8, "topK": 10, "topP": 0.9},
     {"seed": 1, "temperature": 0.8, "top_k": 10, "top_p": 0.9}),
    ({"count": 100, "seed": 3, "prefix": "ra", "minLen": 6, "maxLen": 8},
     {"seed": 3, "prefix": "ra", "min_len": 6, "max_len": 8}),
    ({"count": 150, "seed": 4, "unique": True, "novel": True, "minP": 0.02},
     {"seed": 4, "unique": True, "novel": True, "min_p": 0.02}),
    ({"count": 100, "seed": "18446744073709551615", "temperature": 1.5, "batchSize": 7},
     {"seed": 2**64 - 1, "temperature": 1.5, "batch_size": 7}),
    ({"count": 5, "seed": 9, "temperature": 0}, {"seed": 9, "temperature": 0}),
]


@pytest.mark.parametrize("name", FLOAT)
def test_the_page_gives_the_clis_names_for_a_seed(open_page, name):
    model = NameModel.load(name, engine="onnxruntime")
    page = open_page(name)
    for js, py in REQUESTS:
        count = js["count"]
        assert page.evaluate("o => window.nametool.generate(o)", js) == model.generate(count, **py), js
    cli = subprocess.run([sys.executable, "-c", "from nametool.runtime.cli import main; main()", "generate", "--model", name, "-n", "40",
                          "--seed", "11", "--top-p", "0.95"], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    assert page.evaluate("window.nametool.generate({count: 40, seed: 11, topP: 0.95})") == cli.stdout.split()


def error_line(page) -> str:
    page.wait_for_selector("#error:not([hidden])")
    return page.inner_text("#error")


def rejected(page, script: str, arg=None) -> str:
    message = page.evaluate(f"a => ({script}).then(() => 'resolved', e => String(e.message))", arg)
    assert message != "resolved", script
    assert error_line(page) == message  # the page shows what the promise rejects with
    return message


@pytest.mark.parametrize("options, expected", [
    ({"topP": 2}, "top-p 2 must be in (0, 1]"),
    ({"temperature": -1}, "temperature -1 must be a finite number >= 0"),
    ({"minLen": 9, "maxLen": 5}, "max-len 5 is below min-len 9"),
    ({"prefix": "Ra"}, 'prefix "Ra": "R" not in the vocabulary'),
    ({"seed": -3}, "seed -3 is outside 0..2**64-1"),
    ({"seed": "x"}, 'seed "x" is not a whole number'),
    ({"colour": 1}, "unknown option colour"),
    ({"count": 5, "topK": 0}, "top-k 0 must be at least 1"),
])
def test_bad_settings_give_one_line_in_the_page(open_page, options, expected):
    page = open_page()
    message = rejected(page, "window.nametool.generate(a)", options)
    assert message.startswith(expected) and "\n" not in message
    assert page.eval_on_selector_all("#names li", "items => items.length") == 10  # the page is still there
    assert page.evaluate("window.nametool.generate({count: 3, seed: 1})") == NameModel.load("default").generate(3, seed=1)
    assert page.is_hidden("#error")  # a good call clears it


def test_bad_settings_from_the_form_and_the_context_box(open_page):
    page = open_page()
    page.fill("input[name=topP]", "5")
    page.click("button[type=submit]")
    assert error_line(page) == "top-p 5 must be in (0, 1]"
    page.fill("#context", "ab1")
    page.wait_for_function("document.querySelector('#error').textContent.startsWith('context')")
    assert page.inner_text("#error") == 'context "ab1": "1" not in the vocabulary'


def _tampered(data: bytes) -> bytes:
    """A float file with one weight of the first embedding row changed, metadata kept."""
    from nametool.runtime.onnxfile import read_onnx

    table = read_onnx(data).initializers["members.0.embed.weight"]
    at = data.find(table.tobytes())
    assert at > 0
    changed = (table * np.float32(1.5)).tobytes()
    return data[:at] + changed + data[at + len(changed):]


@pytest.mark.parametrize("kind, expected", [
    ("garbage", "not an ONNX file"),
    ("empty", "not a nametool model: no 'nametool' metadata in the file"),
    ("truncated", "not an ONNX file"),
    ("tampered", "the file's golden rows differ by"),
])
def test_bad_files_give_one_line_and_keep_the_loaded_model(site, open_page, kind, expected):
    page = open_page()
    good = bundled_models()[FLOAT[0]].read_bytes()
    data = {"garbage": bytes(range(256)) * 40, "empty": b"", "truncated": good[: len(good) // 2],
            "tampered": _tampered(good)}[kind]
    (site[0] / f"bad-{kind}.onnx").write_bytes(data)
    message = rejected(page, "fetch(a).then(r => r.arrayBuffer()).then(b => window.nametool.load(new Uint8Array(b), a))",
                       f"bad-{kind}.onnx")
    assert message.startswith(expected) and "\n" not in message, message
    assert page.evaluate("window.nametool.generate({count: 3, seed: 1})") == NameModel.load("default").generate(3, seed=1)


def test_a_missing_model_file_is_named(open_page):
    page = open_page("missing", wait=False)
    assert error_line(page) == "cannot fetch missing.onnx (HTTP 404)"
    assert page.inner_text("#status") == "No model loaded."


def test_the_page_draws_bars_and_the_map_and_takes_a_screenshot(open_page, tmp_path):
    page = open_page()
    model = NameModel.load("default")
    assert page.eval_on_selector_all("#map text", "t => t.length") == len(model.vocab)
    bars = page.eval_on_selector_all("#bars .bar", "b => b.map(x => x.innerText.split('\\n')[0])")
    assert bars[0] == "n"  # "abi" -> n, the most likely, as `nametool-run predict abi` shows
    table = page.evaluate("window.nametool.embeddings(1)")
    assert np.allclose(np.array(table["rows"]), model.embeddings(member=1), atol=0)
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    assert not page.outside and not page.errors


def test_the_site_holds_every_file_it_needs(site):
    from nametool.runtime.website import MODEL_NAME, ORT_FILES, PAGE_FILES

    out, _ = site
    assert {*PAGE_FILES, *ORT_FILES, MODEL_NAME, "NOTICE.txt"} <= {p.name for p in out.iterdir()}
    for name in ("app.js", "index.html", "nametool.js"):
        text = (out / name).read_text().replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in text and "https://" not in text, name


# ---- exact files ---------------------------------------------------------------------------


def cli_names(model: Path, count: int, *options: str) -> str:
    out = subprocess.run([sys.executable, "-c", "from nametool.runtime.cli import main; main()", "generate",
                          "--model", str(model), "-n", str(count), *options], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def many_cli_names(exact_files) -> str:
    return cli_names(exact_files[0], MANY, "--seed", "3")


@pytest.mark.parametrize("engine", ENGINES)
def test_the_page_gives_the_clis_names_on_an_exact_file(exact_site, exact_files, many_cli_names, open_page, engine):
    page = open_page(EXACT, engine=engine)
    info = page.evaluate("window.nametool.info()")
    assert (info["form"], info["engine"]) == ("exact", engine)
    rows = len(NameModel.load(exact_files[0]).meta.golden.contexts)
    assert info["verified"] == {"ok": True, "maxDeviation": 0, "rows": rows, "exact": True}
    names = page.evaluate("n => window.nametool.generate({count: n, seed: 3}).then(names => names.join('\\n'))", MANY)
    assert names + "\n" == many_cli_names
    assert page.eval_on_selector_all("#names li", "items => items.length") == 1000
    assert page.inner_text("#names-note").startswith(f"the first 1,000 of {MANY:,} names")
    model = NameModel.load(exact_files[0])
    for js, py in REQUESTS:
        assert page.evaluate("o => window.nametool.generate(o)", js) == model.generate(js["count"], **py), js
    assert page.is_hidden("#names-note")
    assert not page.outside and not page.errors


@pytest.mark.parametrize("engine", ENGINES)
def test_an_exact_files_bars_are_its_integer_masses_over_their_total(exact_site, exact_files, open_page, engine):
    page = open_page(EXACT, engine=engine)
    model = NameModel.load(exact_files[0])
    for context, temperature in [("", 1), ("ab", 1), ("sha", 0.6), ("ri", 2.5), ("a", 0)]:
        bars = page.evaluate("([c, t]) => window.nametool.next(c, {temperature: t})", [context, temperature])
        expected = model.next_char_distribution(context, temperature=temperature)
        assert [(b["char"], b["p"]) for b in bars] == list(expected.items()), context  # order and value, exactly


def test_the_js_site_carries_no_onnxruntime_web_and_gives_the_clis_names(js_site, exact_files, open_page):
    from nametool.runtime.website import MODEL_NAME, ORT_FILES, PAGE_FILES

    out, base = js_site
    assert not {*ORT_FILES} & {p.name for p in out.iterdir()}
    assert {*PAGE_FILES, MODEL_NAME} <= {p.name for p in out.iterdir()}
    page = open_page("model", base=base)
    assert page.evaluate("window.nametool.info().engine") == "js"
    assert page.eval_on_selector("#engine", "e => e.value") == "js"
    assert page.evaluate("window.nametool.generate({count: 2000, seed: 8, topK: 5})") == \
        cli_names(exact_files[0], 2000, "--seed", "8", "--top-k", "5").split()
    assert not [url for url in page.fetched if "ort" in url]  # never asked for onnxruntime-web
    assert not page.outside and not page.errors


NO_ORT = ("this file needs onnxruntime-web, which this site does not carry "
          "(write the site with: nametool-run web --engine onnxruntime-web)")


def test_the_js_site_names_what_a_float_file_needs(js_site, exact_files, open_page):
    _, base = js_site
    page = open_page("model", base=base)
    message = rejected(page, "fetch(a).then(r => r.arrayBuffer()).then(b => window.nametool.load(new Uint8Array(b), a))",
                       exact_files[1].name)
    assert message == NO_ORT
    assert page.evaluate("window.nametool.info().engine") == "js"  # the loaded model stays
    page = open_page("model", base=base, engine="onnxruntime-web", wait=False)
    assert error_line(page) == NO_ORT


def test_the_engine_can_be_switched_in_the_page(exact_site, exact_files, open_page):
    page = open_page(EXACT, engine="js")  # this site's own default is onnxruntime-web
    assert page.evaluate("window.nametool.info().engine") == "js"
    page.select_option("#engine", "onnxruntime-web")
    page.wait_for_function("window.nametool.info().engine === 'onnxruntime-web'")
    assert "exact form on onnxruntime-web" in page.inner_text("#status")
    expected = NameModel.load(exact_files[0]).generate(500, seed=2)
    assert page.evaluate("window.nametool.generate({count: 500, seed: 2})") == expected
    page.select_option("#engine", "js")
    page.wait_for_function("window.nametool.info().engine === 'js'")
    assert page.evaluate("window.nametool.generate({count: 500, seed: 2})") == expected
    assert "exactly (integer masses)" in page.inner_text("#info")
    assert not page.outside and not page.errors


def test_an_altered_exact_file_fails_its_golden_rows(exact_site, exact_files, open_page):
    from nametool.runtime.onnxfile import read_onnx

    data = exact_files[0].read_bytes()
    bias = read_onnx(data).initializers["exact.out_bias"]
    at = data.find(bias.tobytes())
    changed = bias.copy()
    changed.flat[1] = -changed.flat[1]  # the same bounds, another distribution
    (exact_site[0] / "bad-exact.onnx").write_bytes(data[:at] + changed.tobytes() + data[at + bias.nbytes:])
    page = open_page(EXACT)
    message = rejected(page, "fetch(a).then(r => r.arrayBuffer()).then(b => window.nametool.load(new Uint8Array(b), a))",
                       "bad-exact.onnx")
    assert message.startswith("the file's golden rows differ: ") and "(tolerance 0)" in message, message
    assert page.evaluate("window.nametool.info().source") == f"{EXACT}.onnx"
