"""Clothing Co-Parsing (raw upstream layout) -> train{A,B} with one mask per image per category
(default jeans, skirt) and mask-less val{A,B} from the tag-only photos, as the reference.
Default output: the reference folder layout (`--format tfds` for a TFDS data set).

    python data_prep/ccp.py --root clothing-co-parsing --out datasets/jeans2skirt_ccp
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from instagan_jax.data.cli import main as _cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """Same as `instagan prepare ccp ARGS`."""
    return _cli_main(["prepare", "ccp", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
