"""Atomic file writes: a temporary file in the destination folder, renamed into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from nametool.runtime.errors import NametoolError


@contextlib.contextmanager
def atomic_path(path: Path, *, force: bool = True):
    """Yield a temporary path beside ``path``; on success flush it to disk and rename it over ``path``.

    On any error (or Ctrl-C) the temporary file is removed and ``path`` is untouched;
    a failed write (full disk, read-only or vanished folder) is a one-line error naming ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise NametoolError(f"{path}: is a folder; give a file name")
    if path.exists() and not force:
        raise NametoolError(f"{path} exists; pass --force to replace it")
    if not path.parent.is_dir():
        raise NametoolError(f"{path.parent}: no such folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise NametoolError(f"{path}: cannot write ({exc.strerror or exc})") from None
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
            raise NametoolError(f"{path}: cannot write ({exc.strerror or exc})") from None
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
