"""The same model files on other devices, emulated: verify, seeded names and speed, as a table.

    python tools/devices.py [--roots /var/tmp/nametool-roots] [--out docs/devices.md]

Devices (Debian's qemu-user-static and debootstrap; run as root):
- x86-64 with AVX2 only: this machine's Python under ``qemu-x86_64 -cpu Haswell`` (no AVX-512,
  VNNI or AMX), so onnxruntime and OpenBLAS pick their AVX2 kernels;
- arm64: a Debian bookworm root with Debian's numpy, and onnxruntime from PyPI in a venv;
- armhf (32-bit ARM, a Raspberry Pi's Debian): Debian's numpy, no onnxruntime wheel exists;
  there ``pip install`` of this source tree is also tried, which must skip onnxruntime.
Each runs ``tools/device_check.py`` from a copy of this tree and is compared with the same
check run natively here. Emulated speeds measure the emulator, not the device.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import cpu_line  # noqa: E402
SUITE = "bookworm"
PACKAGES = "python3-numpy,python3-click,python3-venv"
QEMU = {"arm64": "aarch64", "armhf": "arm"}
X86_CPU = "Haswell"  # AVX2 and FMA; no AVX-512, VNNI or AMX
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def run(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=True, **kwargs)


def register_binfmt(arch: str) -> None:
    """Let the kernel run this architecture's binaries through qemu (no systemd here to do it)."""
    folder = Path("/proc/sys/fs/binfmt_misc")
    if not (folder / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(folder)])
    name = f"qemu-{QEMU[arch]}"
    if not (folder / name).exists():
        line = Path(f"/usr/lib/binfmt.d/{name}.conf").read_text().strip()
        (folder / "register").write_text(line)


def ensure_root(roots: Path, arch: str) -> Path:
    root = roots / arch
    if not (root / "usr/bin/python3").exists():
        print(f"debootstrap {arch} into {root} (a few minutes) ...", file=sys.stderr)
        run(["debootstrap", f"--arch={arch}", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(root)])
    return root


@contextmanager
def mounted(root: Path):
    """/proc and /dev inside the root, DNS and CA certificates for pip; undone on exit."""
    with ExitStack() as stack:
        for source, target, how in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"])):
            path = root / target
            path.mkdir(exist_ok=True)
            run(["mount", *how, source, str(path)])
            stack.callback(run, ["umount", "-l", str(path)])
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        if CA_BUNDLE.exists():
            shutil.copy(CA_BUNDLE, root / "etc/ssl/certs/host-ca.crt")
        yield


def copy_tree(root: Path) -> None:
    """This source tree at /opt/nametool-src, and its runtime importable from /opt/nametool-path."""
    src, path = root / "opt/nametool-src", root / "opt/nametool-path/nametool"
    files = run(["git", "ls-files"], cwd=ROOT).stdout.split()
    shutil.rmtree(src, ignore_errors=True)
    for name in files:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    shutil.rmtree(path, ignore_errors=True)
    for package in ("runtime", "models"):
        shutil.copytree(src / package, path / package)


def in_root(root: Path, *args: str) -> list[str]:
    """A command line that runs ``args`` inside the root, with a clean environment."""
    env = ["PATH=/usr/bin:/bin", "HOME=/root", "LC_ALL=C.UTF-8", "PYTHONPATH=/opt/nametool-path",
           "PIP_CERT=/etc/ssl/certs/host-ca.crt", "PIP_DISABLE_PIP_VERSION_CHECK=1"]
    return ["chroot", str(root), "/usr/bin/env", "-i", *env, *args]


MODELS: list[str] = []  # --models: the bundled models to check (empty: all)


def check(command: list[str], engine: str, names: int, timed: int) -> dict:
    chosen = ["--models", ",".join(MODELS)] if MODELS else []
    out = run([*command, "--engine", engine, "--names", str(names), "--timed", str(timed), *chosen], timeout=3600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def chroot_device(roots: Path, arch: str, names: int, timed: int) -> tuple[list[dict], list[str]]:
    """Debian's numpy with PYTHONPATH; then ``pip install`` of this tree into a venv, and with
    onnxruntime if that install brought it."""
    register_binfmt(arch)
    root = ensure_root(roots, arch)
    copy_tree(root)
    checker, venv = "/opt/nametool-src/tools/device_check.py", "/opt/venv"
    results, notes = [], []
    with mounted(root):
        results.append(check(in_root(root, "python3", checker), "numpy", names, timed))
        if not (root / venv.lstrip("/") / "bin/python").exists():
            run(in_root(root, "python3", "-m", "venv", "--system-site-packages", venv))
        install = subprocess.run(in_root(root, f"{venv}/bin/pip", "install", "-q", "/opt/nametool-src"),
                                 capture_output=True, text=True, timeout=3600)
        if install.returncode != 0:
            notes.append(f"{arch}: `pip install` of the source tree failed: {install.stderr.strip()[-300:]}")
            return results, notes
        has_ort = subprocess.run(in_root(root, f"{venv}/bin/python", "-c", "import onnxruntime"),
                                 capture_output=True).returncode == 0
        generated = run(in_root(root, f"{venv}/bin/nametool-run", "generate", "-n", "3", "--seed", "7"))
        notes.append(f"{arch}: `pip install` of this tree into a venv succeeded; onnxruntime "
                     f"{'came with it' if has_ort else 'was left out (no wheel: the marker skips it)'}; "
                     f"`nametool-run generate -n 3 --seed 7` printed `{' '.join(generated.stdout.split())}`")
        if has_ort:
            results.append(check(in_root(root, f"{venv}/bin/python", checker), "onnxruntime", names, timed))
    return results, notes


def x86_avx2_device(names: int, timed: int) -> list[dict]:
    python = os.path.realpath(sys.executable)
    command = ["qemu-x86_64-static", "-cpu", X86_CPU, python, str(ROOT / "tools/device_check.py")]
    return [check(command, engine, names, timed) for engine in ("onnxruntime", "numpy")]


def table(devices: dict[str, list[dict]], here: dict[str, str], bits: dict[tuple[str, str], str]) -> list[str]:
    lines = ["| device | Python | numpy | onnxruntime | model | engine | verify: max \\|dp\\| | "
             "seeded names as here | logits bit for bit as here | names/s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for device, results in devices.items():
        for result in results:
            for row in result["models"]:
                same = "yes" if row["names_sha256"] == here[row["model"]] else "**no**"
                bits_same = "yes" if row["logits_sha256"] == bits[row["engine"], row["model"]] else "no"
                verdict = f"{row['max_dp']:.1e}" + ("" if row["verify_ok"] else " **failed**")
                lines.append(f"| {device} ({result['machine']}) | {result['python']} | {result['numpy']} | "
                             f"{result['onnxruntime'] or 'none'} | {row['model']} | {row['engine']} | {verdict} | "
                             f"{same} | {bits_same} | {row['names_per_s']:,.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", type=Path, default=Path("/var/tmp/nametool-roots"))
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "devices.md")
    # emulated AVX2 runs the default model at about 5 names/s, emulated ARM numpy at about 50
    parser.add_argument("--names", type=int, default=50, help="seeded names compared with this machine's")
    parser.add_argument("--timed", type=int, default=100, help="names generated for the names/s figure")
    parser.add_argument("--models", default="", help="bundled models to check, comma-separated (default: all)")
    args = parser.parse_args()
    MODELS[:] = [m for m in args.models.split(",") if m]
    native = [check([sys.executable, str(ROOT / "tools/device_check.py")], engine, args.names, args.timed)
              for engine in ("onnxruntime", "numpy")]
    here = {row["model"]: row["names_sha256"] for row in native[0]["models"]}
    bits = {(row["engine"], row["model"]): row["logits_sha256"] for result in native for row in result["models"]}
    devices, notes = {"this machine": native, f"x86-64, AVX2 only (qemu -cpu {X86_CPU})":
                      x86_avx2_device(args.names, args.timed)}, []
    for arch in ("arm64", "armhf"):
        results, more = chroot_device(args.roots, arch, args.names, args.timed)
        devices[f"{arch}, Debian {SUITE} (qemu)"] = results
        notes += more
    write(args.out, table(devices, here, bits), notes, args.names)


def write(out: Path, lines: list[str], notes: list[str], names: int) -> None:
    text = [
        "# The same model file on other devices",
        "",
        f"Written by `python tools/devices.py` on {dt.date.today().isoformat()}, on {cpu_line()}.",
        "Each device runs `tools/device_check.py` from a copy of this tree: it verifies each bundled",
        f"model (digests, then the golden rows), generates {names:,} names with seed 7 at batch 4,096 and compares",
        "their SHA-256 with the same names generated here by onnxruntime, compares the SHA-256 of",
        "the logits (an exact file's integers) of 300 seeded random contexts with this machine's on the same",
        "engine, and times generation",
        "on one thread. Emulated speeds are the emulator's, not a device's: compare them only",
        "with each other.",
        "",
        *lines,
        "",
        *[f"- {note}" for note in notes],
        "",
    ]
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as tmp:
        tmp.write("\n".join(text))
    os.replace(tmp.name, out)
    print("\n".join(text))


if __name__ == "__main__":
    main()
