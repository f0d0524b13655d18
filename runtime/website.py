"""``nametool-run web``: a static site that runs one model file in the browser, offline.

Two engines. ``js`` (the default for an exact file): the page's own module computes the
exact form's integers, so the site is the page (``nametool.web``: a few dozen KB, in the
wheel) and the model, nothing else. ``onnxruntime-web`` (a float file needs it): the site
also carries onnxruntime-web's wasm build (14 MB), which the wheel does not. It comes from
the npm package, found in this order: ``--ort-dir``, ``$NAMETOOL_ORT_WEB``, a source
checkout's ``web/node_modules`` (after ``npm ci`` there), the user cache, and last ``npm
install`` into that cache (npm's registry, once).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from nametool.runtime.atomic import cannot_write, check_writable
from nametool.runtime.errors import NametoolError, RequestError

PAGE_FILES = ("index.html", "app.js", "nametool.js", "style.css")
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_NAME = "model.onnx"
ORT_ENV = "NAMETOOL_ORT_WEB"
NPM_TIMEOUT = 300  # seconds: a registry that does not answer stops the command rather than hang it
ENGINES = ("js", "onnxruntime-web")
ENGINE_TAG = '<meta name="nametool-engine" content="js">'  # index.html's default, rewritten per site
NOTICE = """This site was written by nametool-run web (nametool, MIT licence).
"""
ORT_NOTICE = """ort.wasm.min.mjs, ort-wasm-simd-threaded.mjs and ort-wasm-simd-threaded.wasm are
onnxruntime-web {version}, Copyright (c) Microsoft Corporation, MIT licence:
https://github.com/microsoft/onnxruntime
"""


def web_folder() -> Path:
    import nametool.web

    return Path(nametool.web.__file__).parent


def ort_web_version() -> str:
    """The onnxruntime-web release the page is tested with: web/package.json's pin."""
    return json.loads((web_folder() / "package.json").read_text())["dependencies"]["onnxruntime-web"]


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nametool" / f"onnxruntime-web-{ort_web_version()}"


def _dist(folder: Path) -> Path | None:
    """The folder holding ORT_FILES: ``folder`` itself, its ``dist``, or an npm tree's package."""
    for candidate in (folder, folder / "dist", folder / "node_modules" / "onnxruntime-web" / "dist"):
        if all((candidate / name).is_file() for name in ORT_FILES):
            return candidate
    return None


def find_ort_web(ort_dir: Path | None = None, *, fetch: bool = True) -> Path:
    """The folder of onnxruntime-web's wasm files, fetched into the cache with npm if need be."""
    if ort_dir is not None:
        found = _dist(Path(ort_dir))
        if found is None:
            raise RequestError(f"{ort_dir}: no onnxruntime-web build there (needs {', '.join(ORT_FILES)})")
        return found
    for folder in filter(None, (os.environ.get(ORT_ENV), web_folder(), cache_folder())):
        found = _dist(Path(folder))
        if found is not None:
            return found
    if not fetch:
        raise RequestError("onnxruntime-web is not installed here; pass --ort-dir")
    return _npm_install(cache_folder())


def _installed_version(dist: Path) -> str:
    try:
        return json.loads((dist.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "(version unknown)"


def _npm_install(folder: Path) -> Path:
    version = ort_web_version()
    npm = shutil.which("npm")
    hint = f"install it with `npm install onnxruntime-web@{version}` and pass --ort-dir node_modules/onnxruntime-web"
    if npm is None:
        raise RequestError(f"the site needs onnxruntime-web {version}'s wasm files, and npm is not installed; {hint}")
    print(f"fetching onnxruntime-web {version} from the npm registry into {folder} (once)", file=sys.stderr)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run([npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--no-save",
                                 f"onnxruntime-web@{version}"], capture_output=True, text=True, timeout=NPM_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RequestError(f"npm did not install onnxruntime-web {version} within {NPM_TIMEOUT} s; {hint}") from None
    found = _dist(folder)
    if result.returncode != 0 or found is None:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RequestError(f"npm could not install onnxruntime-web {version} ({last}); {hint}")
    return found


def site_engine(engine: str | None, form: str, path) -> str:
    """The engine a site runs its model on: ``engine``, or by default ``js`` for an exact file
    and ``onnxruntime-web`` for a float one, which the js engine cannot run."""
    if engine is None:
        return "js" if form == "exact" else "onnxruntime-web"
    if engine not in ENGINES:
        raise RequestError(f"engine {engine!r} is not one of {', '.join(ENGINES)}")
    if engine == "js" and form != "exact":
        raise RequestError(f"{path} is a float-form file, which the js engine cannot run; "
                           "pass --engine onnxruntime-web (or export the model in the exact form)")
    return engine


def _page(engine: str) -> str:
    """index.html with the site's engine in its nametool-engine tag."""
    page = (web_folder() / "index.html").read_text()
    if ENGINE_TAG not in page:
        raise NametoolError(f"{web_folder() / 'index.html'} lacks its engine tag {ENGINE_TAG}; reinstall nametool")
    return page.replace(ENGINE_TAG, ENGINE_TAG.replace('"js"', f'"{engine}"'))


def build_site(out_dir: Path, model_spec=None, *, engine: str | None = None, ort_dir: Path | None = None,
               force: bool = False) -> list[Path]:
    """Write the page, the model (checked first) and, for the onnxruntime-web engine, its files
    into ``out_dir``. ``engine``: ``js`` or ``onnxruntime-web``; None: by the model's form.

    The folder is built beside its final name and renamed into place: on any error nothing
    is left, and an existing folder is replaced only with ``force``.
    """
    from nametool.runtime.model import NameModel

    out_dir = Path(out_dir)
    check_writable(out_dir, force)  # exists without --force, no such parent folder, cannot write there
    if out_dir.exists() and not out_dir.is_dir():
        raise NametoolError(f"{out_dir} is a file, not a folder")
    model = NameModel.load(model_spec, engine="numpy", large=False)  # a bad file stops here, in one line
    engine = site_engine(engine, model.form, model.path)
    dist = find_ort_web(ort_dir) if engine == "onnxruntime-web" else None
    page = _page(engine)
    parent = out_dir.resolve().parent
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=parent))
    except OSError as exc:
        raise cannot_write(out_dir, exc) from None
    try:
        for name in PAGE_FILES:
            shutil.copyfile(web_folder() / name, staging / name)
        (staging / "index.html").write_text(page, encoding="utf-8")
        notice = NOTICE
        if dist is not None:
            for name in ORT_FILES:
                shutil.copyfile(dist / name, staging / name)
            notice += ORT_NOTICE.format(version=_installed_version(dist))
        (staging / "NOTICE.txt").write_text(notice)
        (staging / MODEL_NAME).write_bytes(model.data)  # the bytes just checked, not the path read again
        staging.chmod(0o755)
        _swap_in(staging, out_dir, parent)
    except OSError as exc:
        raise cannot_write(out_dir, exc) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return sorted(out_dir.iterdir())


def _swap_in(staging: Path, out_dir: Path, parent: Path) -> None:
    """Rename ``staging`` to ``out_dir``; an existing ``out_dir`` is put back if that fails, and no
    hidden ``.OUT.old.*`` folder is left either way."""
    if not out_dir.exists():
        os.replace(staging, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=parent))
    try:
        os.replace(out_dir, old / "site")
        try:
            os.replace(staging, out_dir)
        except OSError:
            os.replace(old / "site", out_dir)
            raise
    finally:
        if out_dir.exists():  # else putting the old site back failed too: its only copy stays in ``old``
            shutil.rmtree(old, ignore_errors=True)
