"""The web page against the CLI's runtime: names/s at the same batch on each page engine, time
from page load to the first names, and the size of each kind of site. Writes docs/img/web.png
(the README's screenshot) on the way.

    python bench/web.py [--runs 5] [--count 4096] [--batch 1024] [--screenshot docs/img/web.png]

Needs what tests/test_web.py needs (Debian's chromium, Playwright, `cd web && npm ci`).
Both sides run one thread: the page's engines are single-threaded (onnxruntime-web's threads
need cross-origin isolation headers a plain static server does not send), the CLI side is
`NameModel.load(threads=1, engine="onnxruntime")`. Exact files run on both page engines (js,
onnxruntime-web), float files on onnxruntime-web. Runs alternate between the two sides, so
both see the same machine load; figures are medians.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_line  # noqa: E402

from nametool.runtime import NameModel  # noqa: E402
from nametool.runtime.model import bundled_models  # noqa: E402
from nametool.runtime.website import build_site  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update"]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/index.html"


def speeds(browser, base: str, name: str, engine: str, args) -> tuple[float, float]:
    """(page names/s, CLI names/s) for one model on one page engine."""
    page = browser.new_page()
    page.goto(f"{base}?model={name}.onnx&engine={engine}")
    page.evaluate("window.nametool.ready")
    model = NameModel.load(name, threads=1, engine="onnxruntime")
    options = {"count": args.count, "batchSize": args.batch}
    page.evaluate("o => window.nametool.generate(o)", {**options, "seed": 0})  # warm-up
    model.generate(args.count, seed=0, batch_size=args.batch)
    web, cli = [], []
    for run in range(1, args.runs + 1):  # a new seed each run: the page's row cache starts cold-ish
        web.append(page.evaluate("async o => { const t = performance.now(); await window.nametool.generate(o);"
                                 " return performance.now() - t; }", {**options, "seed": run}) / 1000)
        start = time.perf_counter()
        model.generate(args.count, seed=run, batch_size=args.batch)
        cli.append(time.perf_counter() - start)
    page.close()
    return args.count / statistics.median(web), args.count / statistics.median(cli)


def first_visit(browser, base: str, runs: int) -> tuple[list[float], list[float]]:
    """(ms to the first names, ms loading and checking the model) of new browser contexts: nothing cached."""
    loads, firsts = [], []
    for _ in range(runs):
        context = browser.new_context()
        page = context.new_page()
        page.goto(base)
        page.evaluate("window.nametool.ready")
        timings = page.evaluate("window.nametool.timings")
        loads.append(timings["loadMs"])
        firsts.append(timings["firstNamesMs"])
        context.close()
    return firsts, loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "img" / "web.png")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    sites = {"onnxruntime-web": folder / "ort-site", "js": folder / "js-site"}
    build_site(sites["onnxruntime-web"], "default", engine="onnxruntime-web")
    build_site(sites["js"], "default")
    for name, path in bundled_models().items():
        shutil.copyfile(path, sites["onnxruntime-web"] / f"{name}.onnx")
    servers = {engine: serve(site) for engine, site in sites.items()}
    print(f"CPU: {cpu_line()}; {args.runs} runs, medians\n")
    for engine, site in sites.items():
        files = [f for f in site.iterdir() if not f.name.endswith(".onnx") or f.name == "model.onnx"]
        print(f"site written with --engine {engine} for the default model: {len(files)} files, "
              f"{sum(f.stat().st_size for f in files) / 1e6:.2f} MB")
    print("\n| model | form | page engine | page names/s | CLI runtime names/s | CLI / page |")
    print("|---|---|---|---|---|---|")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for name, path in bundled_models().items():
            form = NameModel.load(path, engine="numpy").form
            for engine in (["js", "onnxruntime-web"] if form == "exact" else ["onnxruntime-web"]):
                w, c = speeds(browser, servers["onnxruntime-web"][1], name, engine, args)
                print(f"| {name} | {form} | {engine} | {w:,.0f} | {c:,.0f} | {c / w:.2f} |")
        for engine, (_, base) in servers.items():
            firsts, loads = first_visit(browser, base, args.runs)
            print(f"\nfirst visit, site written with --engine {engine}, default model: page load to the first 10 "
                  f"names {statistics.median(firsts):.0f} ms (runs {', '.join(f'{x:.0f}' for x in firsts)}); "
                  f"of which loading and checking the model {statistics.median(loads):.0f} ms")
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(servers["js"][1])
        page.evaluate("window.nametool.ready")
        page.evaluate("window.nametool.generate({count: 20, seed: 1})")
        page.screenshot(path=str(args.screenshot), full_page=True)
        print(f"screenshot: {args.screenshot}")
        browser.close()
    for server, _ in servers.values():
        server.shutdown()
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
