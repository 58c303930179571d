"""LV-MHP v1 -> train{A,B}, test{A,B} with one instance mask per person annotation, resized to
height 450 and centre-cropped to 450x300 (default pants, skirt), as the reference.
Default output: the reference folder layout (`--format tfds` for a TFDS data set).

    python data_prep/mhp.py --root LV-MHP-v1 --out datasets/pants2skirt_mhp
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from instagan_jax.data.cli import main as _cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """Same as `instagan prepare mhp ARGS`."""
    return _cli_main(["prepare", "mhp", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
