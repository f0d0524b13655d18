"""The training names a model file carries, so ``--novel`` works without the dataset.

Stored exactly (no false positives): the sorted names front-coded (each line is
the length of the prefix shared with the previous name, a space, then the rest),
zlib-compressed and base64-encoded. The default dataset's 25,996 names take
about 64 KB this way.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from functools import cached_property

from nametool.runtime.errors import ModelFileError

MAX_BYTES_PER_NAME = 4 * 256 + 8  # names are at most 256 characters; front-coding adds a prefix length


@dataclass(frozen=True)
class KnownNames:
    count: int
    data: str  # base64 of zlib of front-coded sorted names

    @classmethod
    def from_names(cls, names) -> KnownNames:
        lines, previous = [], ""
        ordered = sorted(set(names))
        for name in ordered:
            shared = len(os.path.commonprefix([previous, name]))
            lines.append(f"{shared} {name[shared:]}")
            previous = name
        packed = zlib.compress("\n".join(lines).encode("utf-8"), 9)
        import base64  # here, not at the top: 1.4 ms of every start-up otherwise

        return cls(count=len(ordered), data=base64.b64encode(packed).decode("ascii"))

    @cached_property
    def names(self) -> frozenset[str]:
        import base64
        import binascii

        limit = MAX_BYTES_PER_NAME * max(self.count, 0) + 1024  # a hostile file cannot expand without bound
        try:
            inflater = zlib.decompressobj()
            text = inflater.decompress(base64.b64decode(self.data, validate=True), limit)
            if inflater.unconsumed_tail:
                raise ModelFileError(f"metadata known_names expands beyond {limit} bytes for {self.count} names")
            text = text.decode("utf-8")
        except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError, TypeError):
            raise ModelFileError("metadata known_names is corrupt") from None
        names, previous = [], ""
        for line in text.split("\n") if text else []:
            shared, _, rest = line.partition(" ")
            if not shared.isdigit() or int(shared) > len(previous):
                raise ModelFileError("metadata known_names is corrupt")
            previous = previous[: int(shared)] + rest
            names.append(previous)
        if len(names) != self.count:
            raise ModelFileError(f"metadata known_names holds {len(names)} names, says {self.count}")
        return frozenset(names)

    def __contains__(self, name: str) -> bool:
        return name in self.names
