"""Save drawings into the class collection's database as fast as one student process can: for the tests and the
benchmark of many processes saving at once.

    python scripts/save_drawings.py URL WHO N          # N drawings (every fifth saved twice: a retried click)
    python scripts/save_drawings.py URL WHO --forever  # until killed; prints 'saving' after the first one

URL is a DIGITLAB_DATABASE_URL (sqlite:///... or postgresql://...); each drawing's id is WHO-<number>.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digitlab.drawings_db import Drawings  # noqa: E402


def main(url: str, who: str, n: int | None) -> None:
    db = Drawings(url)
    rng = np.random.default_rng(sum(map(ord, who)))
    i = 0
    while n is None or i < n:
        image = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        db.add(image, i % 10, source="canvas", saved_by=who, drawing_id=f"{who}-{i:04d}")
        if n is not None and i % 5 == 0:  # a retried click: the same drawing saved again
            db.add(image, i % 10, source="canvas", saved_by=who, drawing_id=f"{who}-{i:04d}")
        if i == 0:
            print("saving", flush=True)
        i += 1


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], None if sys.argv[3] == "--forever" else int(sys.argv[3]))
