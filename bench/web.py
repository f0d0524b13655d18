"""The web page against the CLI's runtime: names/s at the same batch, and time from page load
to the first names. Writes docs/img/web.png (the README's screenshot) on the way.

    python bench/web.py [--runs 5] [--count 4096] [--batch 1024]

Needs what tests/test_web.py needs (Debian's chromium, Playwright, `cd web && npm ci`).
Both sides run one thread: the page's onnxruntime-web runs single-threaded (threads need
cross-origin isolation headers a plain static server does not send), the CLI side is
`NameModel.load(threads=1, engine="onnxruntime")`. Runs alternate between the two sides, so
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--count", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    site = folder / "site"
    build_site(site, "default")
    for name, path in bundled_models().items():
        shutil.copyfile(path, site / f"{name}.onnx")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    print(f"CPU: {cpu_line()}; {args.runs} runs, medians\n")
    print("| model | page names/s | CLI runtime names/s | CLI / page |")
    print("|---|---|---|---|")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for name in bundled_models():
            page = browser.new_page()
            page.goto(f"{base}?model={name}.onnx")
            page.evaluate("window.nametool.ready")
            model = NameModel.load(name, threads=1, engine="onnxruntime")
            options = {"count": args.count, "batchSize": args.batch}
            page.evaluate("o => window.nametool.generate(o)", {**options, "seed": 0})  # warm-up
            model.generate(args.count, seed=0, batch_size=args.batch)
            web, cli = [], []
            for run in range(1, args.runs + 1):
                web.append(page.evaluate("async o => { const t = performance.now(); await window.nametool.generate(o);"
                                         " return performance.now() - t; }", {**options, "seed": run}) / 1000)
                start = time.perf_counter()
                model.generate(args.count, seed=run, batch_size=args.batch)
                cli.append(time.perf_counter() - start)
            w, c = args.count / statistics.median(web), args.count / statistics.median(cli)
            print(f"| {name} | {w:,.0f} | {c:,.0f} | {c / w:.2f} |")
            page.close()
        loads, firsts = [], []
        for _ in range(args.runs):  # a new context each time: nothing cached, as a first visit
            context = browser.new_context()
            page = context.new_page()
            page.goto(base)
            page.evaluate("window.nametool.ready")
            timings = page.evaluate("window.nametool.timings")
            loads.append(timings["loadMs"])
            firsts.append(timings["firstNamesMs"])
            context.close()
        print(f"\nfirst visit, default model: page load to the first 10 names {statistics.median(firsts):.0f} ms "
              f"(runs {', '.join(f'{x:.0f}' for x in firsts)}); of which loading and checking the model "
              f"{statistics.median(loads):.0f} ms")
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(base)
        page.evaluate("window.nametool.ready")
        page.evaluate("window.nametool.generate({count: 20, seed: 1})")
        shot = ROOT / "docs" / "img" / "web.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot.relative_to(ROOT)}")
        browser.close()
    server.shutdown()
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
