"""`instagan prepare {coco,ccp,mhp,shapes}`: raw data -> TFDS data set or reference-layout folder.

Wire into the main CLI with `add_prepare_parser(subparsers)`, or run
`python -m instagan_jax.data.cli prepare ...`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from instagan_jax.data.errors import DataError, SkipLog

log = logging.getLogger(__name__)


def _split_spec(text: str) -> tuple[str, str, str]:
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected PHASE:INSTANCES_JSON:IMAGE_DIR, got {text!r}")
    return parts[0], parts[1], parts[2]


def _common(parser: argparse.ArgumentParser, fmt: str, cat_a: str | None, cat_b: str | None) -> None:
    parser.add_argument("--out", required=True, type=Path,
                        help="output folder (the folder layout) or TFDS data_dir (format tfds)")
    parser.add_argument("--format", choices=("tfds", "folder"), default=fmt,
                        help=f"TFDS ArrayRecord data set or the reference's folder layout (default {fmt})")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip unreadable or inconsistent records (counted and logged) instead of failing")
    if cat_a is not None:
        parser.add_argument("--cat-a", default=cat_a, help=f"category of domain A (default {cat_a})")
        parser.add_argument("--cat-b", default=cat_b, help=f"category of domain B (default {cat_b})")
        parser.add_argument("--name", default=None,
                            help="TFDS config name (default: from the data set and categories)")


def add_prepare_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `prepare` (with sub-commands coco, ccp, mhp, shapes) on an argparse subparsers object."""
    prepare = subparsers.add_parser("prepare", help="turn raw data into training data",
                                    description=__doc__.splitlines()[0])
    kinds = prepare.add_subparsers(dest="dataset", required=True)

    coco = kinds.add_parser("coco", help="COCO instances: two categories -> domains A, B")
    coco.add_argument("--root", required=True, type=Path, help="COCO folder (TFDS manual_dir)")
    coco.add_argument("--split", dest="splits", action="append", type=_split_spec, metavar="PHASE:JSON:IMAGES",
                      help="a split, paths relative to --root (repeatable; default: COCO 2017 train and val)")
    coco.add_argument("--image-size", type=int, default=256,
                      help="short side resize + centre crop size; 0 keeps the original size (default 256)")
    coco.add_argument("--no-crowd", action="store_true", help="drop crowd annotations (the reference keeps them)")
    _common(coco, "tfds", "sheep", "giraffe")

    ccp = kinds.add_parser("ccp", help="Clothing Co-Parsing (raw upstream layout)")
    ccp.add_argument("--root", required=True, type=Path, help="folder with photos/, annotations/, label_list.mat")
    _common(ccp, "folder", "jeans", "skirt")

    mhp = kinds.add_parser("mhp", help="LV-MHP v1: one mask per person")
    mhp.add_argument("--root", required=True, type=Path, help="folder with images/, annotations/, *_list.txt")
    mhp.add_argument("--size", type=int, nargs=2, default=(450, 300), metavar=("H", "W"),
                     help="output size (default 450 300)")
    mhp.add_argument("--no-skip-horizontal", action="store_true", help="keep landscape images")
    _common(mhp, "folder", "pants", "skirt")

    shapes = kinds.add_parser("shapes", help="the built-in shapes data set, written out")
    shapes.add_argument("--num", type=int, default=100, help="records per domain (default 100)")
    shapes.add_argument("--size", type=int, nargs=2, default=(220, 220), metavar=("H", "W"))
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--phase", default="train")
    _common(shapes, "folder", None, None)
    shapes.add_argument("--name", default="shapes", help="TFDS config name (default shapes)")

    prepare.set_defaults(func=run_prepare)
    return prepare


def _splits(args: argparse.Namespace, skips: SkipLog) -> dict:
    if args.dataset == "ccp":
        from instagan_jax.data.prepare.ccp import ccp_splits

        return ccp_splits(args.root, args.cat_a, args.cat_b, skips=skips)
    if args.dataset == "mhp":
        from instagan_jax.data.prepare.mhp import mhp_splits

        return mhp_splits(args.root, args.cat_a, args.cat_b, size=tuple(args.size),
                          skip_horizontal=not args.no_skip_horizontal, skips=skips)
    if args.dataset == "shapes":
        from instagan_jax.data.prepare.shapes import shapes_splits

        return shapes_splits(args.num, args.seed, args.size[0], args.size[1], phase=args.phase)
    from instagan_jax.data.prepare.coco import COCO2017_SPLITS, coco_splits

    return coco_splits(args.root, args.cat_a, args.cat_b, splits=tuple(args.splits or COCO2017_SPLITS),
                       image_size=args.image_size, include_crowd=not args.no_crowd, skips=skips)


def _build_coco_tfds(args: argparse.Namespace) -> dict[str, int]:
    from instagan_jax.data import tfds_data
    from instagan_jax.data.instagan_coco import Builder, pair_config
    from instagan_jax.data.prepare.coco import COCO2017_SPLITS

    config = pair_config(args.cat_a, args.cat_b, splits=tuple(args.splits or COCO2017_SPLITS),
                         image_size=args.image_size, include_crowd=not args.no_crowd, skip_bad=args.skip_bad)
    if args.name:
        config.name = args.name
    builder = Builder(data_dir=str(args.out), config=config)
    tfds_data.build(builder, args.root)
    print(f"TFDS data set instagan_coco/{config.name} in {builder.data_dir}")
    return {name: split.num_examples for name, split in builder.info.splits.items()}


def run_prepare(args: argparse.Namespace) -> int:
    """Run one `prepare` command; print what was written per split. Returns the exit status."""
    from instagan_jax.data.prepare import write_splits

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    skips = SkipLog(args.skip_bad)
    try:
        if args.dataset == "coco" and args.format == "tfds":
            counts = _build_coco_tfds(args)
        else:
            name = args.name or f"{args.dataset}_{args.cat_a}_{args.cat_b}".replace(" ", "-")
            counts = write_splits(_splits(args, skips), args.out, args.format, name)
            where = args.out if args.format == "folder" else f"TFDS instagan_folder/{name} in {args.out}"
            print(f"wrote {where}")
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split, count in sorted(counts.items()):
        print(f"  {split}: {count} images")
    if skips.count:
        print(f"  skipped {skips.count} bad record(s), see the warnings above")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m instagan_jax.data.cli prepare ...`."""
    parser = argparse.ArgumentParser(prog="instagan")
    add_prepare_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
