"""Atomic file writes: a temporary file in the destination folder, renamed into place."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from nametool.runtime.errors import NametoolError


@contextlib.contextmanager
def atomic_path(path: Path, *, force: bool = True):
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    On any error (or Ctrl-C) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    if path.exists() and not force:
        raise NametoolError(f"{path} exists; pass --force to replace it")
    if not path.parent.is_dir():
        raise NametoolError(f"{path.parent}: no such folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise NametoolError(f"{path}: cannot write ({exc.strerror})") from None
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a finished file gets the usual mode
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
