"""The site `nametool-run web` writes, in a real headless browser (Debian's chromium via Playwright).

Served from loopback with every other address refused: the page must carry all it needs.
Skipped, with the reason shown by ``pytest -ra``, where chromium, Playwright or
onnxruntime-web's files (``cd web && npm ci``) are missing; ``.ci/run`` installs all three.
"""

from __future__ import annotations

import functools
import http.server
import json
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


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(out, "default")
    for name, path in bundled_models().items():
        shutil.copyfile(path, out / f"{name}.onnx")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield out, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def open_page(site, browser):
    """A page of the site for one model; records what it asked for beyond the server, and its errors."""
    _, base = site
    pages = []

    def open_(model: str = "default", wait: bool = True):
        page = browser.new_page()
        page.outside, page.errors = [], []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))

        def route(r):
            if r.request.url.startswith(base):
                return r.continue_()
            page.outside.append(r.request.url)
            return r.abort()

        page.route("**/*", route)
        page.goto(f"{base}index.html?model={model}.onnx")
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


@pytest.mark.parametrize("name", BUNDLED)
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


@pytest.mark.parametrize("name", BUNDLED)
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
    """The default file with one weight of the first embedding row changed, metadata kept."""
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
    good = bundled_models()["default"].read_bytes()
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
