"""COCO 2017 (or any COCO-format instances json) -> two category domains, the reference recipe:
resize short side to 256 + centre crop, one mask per annotation (crowd kept unless --no-crowd),
empty masks dropped. Default output: a TFDS data set (`--format folder` for the folder layout).

    python data_prep/coco.py --root COCO --cat-a sheep --cat-b giraffe --out ~/tensorflow_datasets
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from instagan_jax.data.cli import main as _cli_main


def main(argv: Sequence[str] | None = None) -> int:
    """Same as `instagan prepare coco ARGS`."""
    return _cli_main(["prepare", "coco", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
