"""Build the default dataset (train/data/indian_names.txt) from the raw source lists.

Run once by a maintainer; nothing at run time or in the tests reads the sources:

    python tools/build_dataset.py ../shared/data/indian-names

The curation is the lecture's: lowercase a-z only, 5 to 9 letters, titles and
honorifics removed, a few Western names known to be noise removed, deduplicated,
sorted. Every step reports what it dropped.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

from nametool.train.config import DEFAULT_MAX_LEN, DEFAULT_MIN_LEN

# Titles and honorifics that the record-derived lists carry as first tokens.
TITLES = frozenset(
    "smt smti shrimati srimati sri shri shree sree kumari kum km md mohd ms miss "
    "mrs mr dr sh baby master late".split()
)
# Western names the source notes call out as noise in three of the lists.
WESTERN_NOISE = frozenset("john mary sarah daniel".split())
LETTERS = re.compile(r"^[a-z]+$")

OUT = Path(__file__).resolve().parent.parent / "train" / "data" / "indian_names.txt"


def main(source_dir: Path) -> None:
    sources = sorted(source_dir.glob("*.txt"))
    if not sources:
        sys.exit(f"error: no .txt lists in {source_dir}")
    raw = []
    for path in sources:
        lines = path.read_text(encoding="utf-8").splitlines()
        print(f"{path.name:40s} {len(lines):6d} lines")
        raw.extend(line.strip().lower() for line in lines)
    dropped: Counter[str] = Counter()
    kept: set[str] = set()
    for name in raw:
        if not name:
            dropped["blank"] += 1
        elif not LETTERS.match(name):
            dropped["not a-z"] += 1
        elif name in TITLES:
            dropped["title or honorific"] += 1
        elif name in WESTERN_NOISE:
            dropped["western noise"] += 1
        elif not DEFAULT_MIN_LEN <= len(name) <= DEFAULT_MAX_LEN:
            dropped[f"length outside {DEFAULT_MIN_LEN}-{DEFAULT_MAX_LEN}"] += 1
        elif name in kept:
            dropped["duplicate across lists"] += 1
        else:
            kept.add(name)
    for reason, count in dropped.most_common():
        print(f"dropped {count:6d}  {reason}")
    OUT.write_text("".join(f"{name}\n" for name in sorted(kept)), encoding="utf-8")
    print(f"wrote {len(kept)} names to {OUT}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tools/build_dataset.py SOURCE_DIR")
    main(Path(sys.argv[1]))
