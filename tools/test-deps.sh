#!/usr/bin/env bash
# What the tests need beyond pip; fails (exit 1, saying what) where it cannot be had, since a
# test without what it needs is skipped, and .ci/run counts a skip as a failure.
# - Debian's qemu-user-static: tests/test_other_cpus.py emulates an AVX2-only x86 CPU.
# - Debian's chromium: tests/test_web.py runs the web page (Playwright drives it; no browser download).
# - Node.js and npm: tests/test_web_module.py and tests/js; onnxruntime-web's wasm build at the
#   version web/package-lock.json pins (npm ci).
set -uo pipefail
cd "$(dirname "$0")/.."
need=()
command -v qemu-x86_64-static >/dev/null || command -v qemu-x86_64 >/dev/null || need+=(qemu-user-static)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
    if ! command -v apt-get >/dev/null || [ "$(id -u)" != 0 ]; then
        echo "error: ${need[*]} missing; install them (as root: apt-get install ${need[*]})" >&2
        exit 1
    fi
    if ! (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null); then
        echo "error: apt-get could not install ${need[*]}" >&2
        exit 1
    fi
fi
if ! (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
    echo "error: npm ci failed in web/ (onnxruntime-web for the browser tests)" >&2
    exit 1
fi
