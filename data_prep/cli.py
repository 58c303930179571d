"""`instagan prepare {coco,ccp,mhp,shapes}`: raw data -> TFDS data set or reference-layout folder.

Wire into the main CLI with `add_prepare_parser(subparsers)`, or run
`python -m data_prep.cli prepare ...`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from data_prep.drops import DropTally
from instagan_jax.data.errors import DataError, SkipLog

if TYPE_CHECKING:
    from data_prep.coco import CocoRecipe

log = logging.getLogger(__name__)

#: `prepare` arguments that say where or how the data is written, not what it is.
_NOT_DATA_OPTIONS = frozenset({"out", "format", "skip_bad", "name", "func", "command"})


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
    shapes.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="image size (default 220 220, or the --config's)")
    shapes.add_argument("--config", help="draw the shapes as this config's data options do (data.kind shapes), "
                        "e.g. discs2squares; --num, --seed and --size replace its size, seed and image size")
    shapes.add_argument("--seed", type=int, default=0)
    shapes.add_argument("--phase", default="train")
    _common(shapes, "folder", None, None)
    shapes.add_argument("--name", default="shapes", help="TFDS config name (default shapes)")

    prepare.set_defaults(func=run_prepare)
    return prepare


def _splits(args: argparse.Namespace, skips: SkipLog, drops: DropTally) -> dict:
    if args.dataset == "ccp":
        from data_prep.ccp import ccp_splits

        return ccp_splits(args.root, args.cat_a, args.cat_b, skips=skips)
    if args.dataset == "mhp":
        from data_prep.mhp import mhp_splits

        return mhp_splits(args.root, args.cat_a, args.cat_b, size=tuple(args.size),
                          skip_horizontal=not args.no_skip_horizontal, skips=skips, drops=drops)
    if args.dataset == "shapes":
        from data_prep.shapes import shapes_splits

        looks = shapes_looks(args.config)
        height, width = args.size or (looks.pop("height", 220), looks.pop("width", 220))
        for key in ("height", "width", "size", "seed", "paired"):
            looks.pop(key, None)
        return shapes_splits(args.num, args.seed, height, width, phase=args.phase, **looks)
    from data_prep.coco import coco_splits

    return coco_splits(args.root, args.cat_a, args.cat_b, _coco_recipe(args), skips=skips, drops=drops)


def shapes_looks(config_name: str | None) -> dict:
    """The data options of a config of shapes data ({} without one); ValueError for another kind."""
    if config_name is None:
        return {}
    from instagan_jax.methods import load_config

    data = load_config(config_name).data
    if data.kind != "shapes":
        raise ValueError(f"--config {config_name}: its data.kind is {data.kind!r}, not 'shapes'")
    return dict(data.options)


def _coco_recipe(args: argparse.Namespace) -> CocoRecipe:
    from data_prep.coco import COCO2017_SPLITS, CocoRecipe

    return CocoRecipe(splits=tuple(args.splits or COCO2017_SPLITS), image_size=args.image_size,
                      include_crowd=not args.no_crowd)


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options that define the data a `prepare` command makes (not where or how it is written)."""
    options = {key: value for key, value in vars(args).items() if key not in _NOT_DATA_OPTIONS}
    if args.dataset == "coco":
        options["splits"] = _coco_recipe(args).splits
    return options


class _Output(NamedTuple):
    where: str  # for messages
    folder: Path  # where the manifest lives
    occupied: bool  # holds data already
    build: Callable[[], dict[str, int]]  # writes it, returns images per split


def _coco_tfds_output(args: argparse.Namespace, skips: SkipLog, drops: DropTally) -> _Output:
    from data_prep.instagan_coco import Builder, pair_config
    from instagan_jax.data import tfds_data

    builder = Builder(data_dir=str(args.out), config=pair_config(args.cat_a, args.cat_b, args.name),
                      recipe=_coco_recipe(args), skips=skips, drops=drops)

    def build() -> dict[str, int]:
        tfds_data.build(builder, args.root)
        return {name: split.num_examples for name, split in builder.info.splits.items()}

    where = f"TFDS data set instagan_coco/{builder.builder_config.name} in {builder.data_path}"
    return _Output(where, Path(builder.data_path), Path(builder.data_path).exists(), build)


def _folder_output(args: argparse.Namespace, skips: SkipLog, drops: DropTally) -> _Output:
    from data_prep import STAGING, write_splits
    from data_prep.drops import non_empty

    name = args.name or f"{args.dataset}_{args.cat_a}_{args.cat_b}".replace(" ", "-")

    def build() -> dict[str, int]:
        splits = {split: non_empty(split, records, drops) for split, records in _splits(args, skips, drops).items()}
        return write_splits(splits, args.out, args.format, name)

    if args.format == "folder":
        occupied = args.out.is_dir() and any(not p.name.startswith(STAGING) for p in args.out.iterdir())
        return _Output(f"folder {args.out}", args.out, occupied, build)
    from data_prep.instagan_folder import Builder, folder_config

    data_path = Path(Builder(data_dir=str(args.out), config=folder_config(name)).data_path)
    return _Output(f"TFDS data set instagan_folder/{name} in {data_path}", data_path, data_path.exists(), build)


def run_prepare(args: argparse.Namespace) -> int:
    """Run one `prepare` command; print what was written per split. Returns the exit status."""
    from data_prep.manifest import reusable_manifest, write_manifest

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.dataset == "shapes":  # a bad --config is named before anything is written
        try:
            shapes_looks(args.config)
        except (ValueError, FileNotFoundError) as err:
            print(f"instagan prepare: error: {err}", file=sys.stderr)
            return 2
    skips, drops, options = SkipLog(args.skip_bad), DropTally(), data_options(args)
    try:
        output = (_coco_tfds_output if args.dataset == "coco" and args.format == "tfds" else _folder_output)(
            args, skips, drops)
        manifest = reusable_manifest(output.folder, options, output.occupied)
        if manifest is None:
            counts = output.build()
            dropped = {split: drops.describe(split) for split in counts}
            write_manifest(output.folder, options, counts, dropped)
            print(f"wrote {output.where}")
        else:
            counts, dropped = manifest["counts"], manifest.get("dropped", {})
            print(f"{output.where} was prepared with the same options before: kept as it is")
    except DataError as err:
        print(f"instagan prepare: error: {err}", file=sys.stderr)
        return 2
    for split, count in sorted(counts.items()):
        print(f"  {split}: {count} images" + (f"; dropped {dropped[split]}" if dropped.get(split) else ""))
    if skips.count:
        print(f"  skipped {skips.count} bad record(s), see the warnings above")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m data_prep.cli prepare ...`."""
    parser = argparse.ArgumentParser(prog="instagan")
    add_prepare_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
