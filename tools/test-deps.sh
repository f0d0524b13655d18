#!/usr/bin/env bash
# What the tests need beyond pip, each skipped (with a warning) where it cannot be had; the
# tests that need it are then skipped too, and `pytest -ra` lists why.
# - Debian's qemu-user-static: tests/test_other_cpus.py emulates an AVX2-only x86 CPU.
# - Debian's chromium: tests/test_web.py runs the web page (Playwright drives it; no browser download).
# - onnxruntime-web's wasm build, at the version web/package-lock.json pins (npm ci).
set -uo pipefail
cd "$(dirname "$0")/.."
need=()
command -v qemu-x86_64-static >/dev/null || need+=(qemu-user-static)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        (apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null) \
            || echo "warning: could not install ${need[*]}; the tests that need them will be skipped"
    else
        echo "warning: ${need[*]} missing (apt-get install ${need[*]}, as root); the tests that need them will be skipped"
    fi
fi
if command -v npm >/dev/null; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
        || echo "warning: npm ci failed in web/; the browser tests will be skipped"
else
    echo "warning: npm is not installed; the browser tests will be skipped"
fi
exit 0
