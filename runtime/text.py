"""Text rules shared by training and the runtime, so a name means the same on both sides."""

from __future__ import annotations

import unicodedata


def normalise(line: str) -> str:
    """One name as we store it: Unicode NFC, surrounding whitespace removed, lowercase."""
    return unicodedata.normalize("NFC", line).strip().lower()
