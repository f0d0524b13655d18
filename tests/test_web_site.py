"""`nametool-run web OUT_DIR`: what it writes, and its one-line refusals. No browser needed:
onnxruntime-web's files are stood in for by placeholders (tests/test_web.py runs the real ones)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nametool.runtime import website as site
from nametool.runtime.cli import main
from nametool.runtime.errors import RequestError
from nametool.runtime.model import bundled_models
from nametool.runtime.model import NameModel
from nametool.runtime.website import MODEL_NAME, ORT_FILES, PAGE_FILES

FORMS = {name: NameModel.load(path, engine="numpy").form for name, path in bundled_models().items()}
EXACT = next((name for name, form in FORMS.items() if form == "exact"), None)
FLOAT = next((name for name, form in FORMS.items() if form == "float"), None)
SITE_LIMIT = 2_500_000  # bytes: a js-engine site with the default model


@pytest.fixture
def ort_dir(tmp_path) -> Path:
    dist = tmp_path / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    for name in ORT_FILES:
        (dist / name).write_bytes(name.encode())
    (dist.parent / "package.json").write_text('{"version": "9.9.9"}')
    return dist.parent


def web(*args):
    return CliRunner().invoke(main, ["web", *map(str, args)])


def test_the_site_has_the_page_the_model_and_onnxruntime_web(tmp_path, ort_dir):
    out = tmp_path / "site"
    result = web(out, "--model", "lecture", "--engine", "onnxruntime-web", "--ort-dir", ort_dir)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: 9 files" in result.output and "python -m http.server -d" in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([*PAGE_FILES, *ORT_FILES, MODEL_NAME, "NOTICE.txt"])
    assert (out / MODEL_NAME).read_bytes() == bundled_models()["lecture"].read_bytes()
    assert (out / "nametool.js").read_bytes() == (site.web_folder() / "nametool.js").read_bytes()
    assert "onnxruntime-web 9.9.9" in (out / "NOTICE.txt").read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_an_existing_folder_is_replaced_only_with_force(tmp_path, ort_dir):
    out = tmp_path / "site"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = web(out, "--ort-dir", ort_dir)
    assert result.exit_code == 1 and result.output == f"Error: {out} exists; pass --force to replace it\n"
    assert (out / "keep.txt").read_text() == "mine"
    assert web(out, "--ort-dir", ort_dir, "--force").exit_code == 0
    assert not (out / "keep.txt").exists() and (out / MODEL_NAME).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_bad_model_is_refused_before_anything_is_written(tmp_path, ort_dir):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    out = tmp_path / "site"
    result = web(out, "--model", bad, "--ort-dir", ort_dir)
    assert result.exit_code == 1 and result.output.startswith(f"Error: {bad}: ") and result.output.count("\n") == 1
    assert not out.exists()


def test_an_ort_dir_without_the_wasm_build_is_named(tmp_path):
    result = web(tmp_path / "site", "--engine", "onnxruntime-web", "--ort-dir", tmp_path)
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path}: no onnxruntime-web build there (needs {', '.join(ORT_FILES)})\n")
    assert not (tmp_path / "site").exists()


def test_without_npm_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(site.shutil, "which", lambda name: None)
    with pytest.raises(RequestError, match=r"npm is not installed; install it with `npm install onnxruntime-web@"):
        site._npm_install(tmp_path / "cache")


def test_a_failing_npm_is_one_line(tmp_path, monkeypatch):
    npm = tmp_path / "npm"
    npm.write_text("#!/bin/sh\necho 'npm error code E404' >&2\necho 'npm error 404 Not Found' >&2\nexit 1\n")
    npm.chmod(0o755)
    monkeypatch.setattr(site.shutil, "which", lambda name: str(npm))
    with pytest.raises(RequestError) as info:
        site._npm_install(tmp_path / "cache")
    assert "npm could not install onnxruntime-web" in str(info.value) and "npm error 404 Not Found" in str(info.value)
    assert "\n" not in str(info.value)


def test_the_pinned_version_is_the_one_the_lock_file_holds():
    import json

    lock = json.loads((site.web_folder() / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/onnxruntime-web"]["version"] == site.ort_web_version()


def engine_tag(out: Path) -> str:
    import re

    return re.search(r'<meta name="nametool-engine" content="([^"]*)">', (out / "index.html").read_text()).group(1)


@pytest.mark.skipif(EXACT is None, reason="no bundled model is in the exact form")
def test_an_exact_file_gets_the_js_engine_and_no_onnxruntime_web(tmp_path, monkeypatch):
    def no_ort(*args, **kwargs):
        raise AssertionError("the js engine needs no onnxruntime-web")

    monkeypatch.setattr(site, "find_ort_web", no_ort)
    out = tmp_path / "site"
    result = web(out, "--model", EXACT)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([*PAGE_FILES, MODEL_NAME, "NOTICE.txt"])
    assert engine_tag(out) == "js" and "onnxruntime" not in (out / "NOTICE.txt").read_text()
    assert (out / "app.js").read_bytes() == (site.web_folder() / "app.js").read_bytes()
    assert f"wrote {out}: 6 files" in result.output


@pytest.mark.skipif(FORMS.get("default") != "exact", reason="the bundled default is not in the exact form")
def test_the_default_js_site_is_small():
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        files = site.build_site(Path(folder) / "site")
        assert sum(f.stat().st_size for f in files) < SITE_LIMIT


@pytest.mark.skipif(EXACT is None, reason="no bundled model is in the exact form")
def test_an_exact_file_can_run_on_onnxruntime_web(tmp_path, ort_dir):
    out = tmp_path / "site"
    result = web(out, "--model", EXACT, "--engine", "onnxruntime-web", "--ort-dir", ort_dir)
    assert result.exit_code == 0, result.output
    assert {*ORT_FILES} <= {p.name for p in out.iterdir()} and engine_tag(out) == "onnxruntime-web"


@pytest.mark.skipif(FLOAT is None, reason="no bundled model is in the float form")
def test_a_float_file_gets_onnxruntime_web_by_default(tmp_path, ort_dir):
    out = tmp_path / "site"
    assert web(out, "--model", FLOAT, "--ort-dir", ort_dir).exit_code == 0
    assert {*ORT_FILES} <= {p.name for p in out.iterdir()} and engine_tag(out) == "onnxruntime-web"


@pytest.mark.skipif(FLOAT is None, reason="no bundled model is in the float form")
def test_a_float_file_with_the_js_engine_is_refused_in_one_line(tmp_path, ort_dir):
    out = tmp_path / "site"
    result = web(out, "--model", FLOAT, "--engine", "js", "--ort-dir", ort_dir)
    path = bundled_models()[FLOAT]
    assert result.exit_code == 1
    assert result.output == (f"Error: {path} is a float-form file, which the js engine cannot run; pass --engine "
                             "onnxruntime-web (or export the model in the exact form)\n")
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_an_unknown_engine_is_a_usage_error(tmp_path):
    result = web(tmp_path / "site", "--engine", "wasm")
    assert result.exit_code == 2 and "'wasm' is not one of 'js', 'onnxruntime-web'" in result.output
    assert not (tmp_path / "site").exists()


def test_a_failed_swap_puts_the_old_site_back_and_leaves_no_hidden_folder(tmp_path, monkeypatch):
    out = tmp_path / "site"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    real_replace, calls = site.os.replace, []

    def fail_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the staged site onto OUT_DIR
            raise OSError(28, "No space left on device")
        return real_replace(src, dst)

    monkeypatch.setattr(site.os, "replace", fail_second)
    result = web(out, "--force")
    assert result.exit_code == 1 and "No space left on device" in result.output and result.output.count("\n") == 1
    assert len(calls) == 3 and (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no .site.* staging or .site.old.* folder


def test_the_site_holds_the_bytes_that_were_checked(tmp_path, monkeypatch):
    """The model is read once: a file swapped after the check does not reach the site."""
    source = tmp_path / "m.onnx"
    source.write_bytes(bundled_models()["lecture"].read_bytes())
    real_load = NameModel.load

    def load_then_swap(*args, **kwargs):
        model = real_load(*args, **kwargs)
        source.write_bytes(b"swapped after the check")
        return model

    monkeypatch.setattr(NameModel, "load", load_then_swap)
    assert web(tmp_path / "site", "--model", source).exit_code == 0
    assert (tmp_path / "site" / MODEL_NAME).read_bytes() == bundled_models()["lecture"].read_bytes()


def test_an_npm_that_hangs_is_stopped_in_one_line(tmp_path, monkeypatch):
    npm = tmp_path / "npm"
    npm.write_text("#!/bin/sh\nsleep 30\n")
    npm.chmod(0o755)
    monkeypatch.setattr(site.shutil, "which", lambda name: str(npm))
    monkeypatch.setattr(site, "NPM_TIMEOUT", 1)
    with pytest.raises(RequestError, match=r"npm did not install onnxruntime-web .* within 1 s"):
        site._npm_install(tmp_path / "cache")
