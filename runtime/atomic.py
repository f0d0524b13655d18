"""Atomic file writes: a temporary file in the destination folder, renamed into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from nametool.runtime.errors import NametoolError


def refuse_existing(path: Path, force: bool) -> None:
    if Path(path).exists() and not force:
        raise NametoolError(f"{path} exists; pass --force to replace it")


def cannot_write(path: Path, exc: OSError) -> NametoolError:
    return NametoolError(f"{path}: cannot write ({exc.strerror or exc})")


def check_writable(path: Path, force: bool) -> None:
    """Refuse a doomed output before spending minutes on it: the same checks ``atomic_path`` makes."""
    path = Path(path)
    refuse_existing(path, force)
    if not path.parent.is_dir():
        raise NametoolError(f"{path.parent}: no such folder (for {path})")
    try:  # the file is written beside its final name, then renamed
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise cannot_write(path, exc) from None


@contextlib.contextmanager
def atomic_path(path: Path, *, force: bool = True):
    """Yield a temporary path beside ``path``; on success flush it to disk and rename it over ``path``.

    On any error (or Ctrl-C) the temporary file is removed and ``path`` is untouched;
    a failed write (full disk, read-only or vanished folder) is a one-line error naming ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise NametoolError(f"{path}: is a folder; give a file name")
    refuse_existing(path, force)
    if not path.parent.is_dir():
        raise NametoolError(f"{path.parent}: no such folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
        yield Path(tmp)
        _fsync(tmp)  # the data is on disk before the name points at it (a power cut leaves no empty file)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from None
        raise
    with contextlib.suppress(OSError):  # some file systems cannot sync a folder; the rename is done
        _fsync(path.parent)


def _fsync(name) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
