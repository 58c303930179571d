"""The reference's COCO recipe: per category, every image with an instance of it; each
annotation (crowd included by default) becomes a mask; image and masks are resized so the short
side is `image_size` and centre-cropped to a square; empty masks are dropped, and images left
without a mask. Records are named by the COCO file name's stem (the reference used a counter)."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from data_prep.common import centre_crop, resize_short_side
from data_prep.drops import DropTally
from instagan_jax.data.coco import CocoSource, load_coco
from instagan_jax.data.errors import DataError, SkipLog
from instagan_jax.data.imageio import encode_png
from instagan_jax.data.records import EncodedRecord

#: (phase, instances json, image folder) of COCO 2017, relative to its root.
COCO2017_SPLITS = (
    ("train", "annotations/instances_train2017.json", "train2017"),
    ("val", "annotations/instances_val2017.json", "val2017"),
)


@dataclasses.dataclass(frozen=True)
class CocoRecipe:
    """The recipe's options: the (phase, instances json, image folder) splits, relative to the
    COCO root; the square output size (0 keeps the original size); whether crowds are masks."""

    splits: tuple[tuple[str, str, str], ...] = COCO2017_SPLITS
    image_size: int = 256
    include_crowd: bool = True


def _fit(array: np.ndarray, image_size: int) -> np.ndarray:
    if image_size <= 0:
        return array
    return centre_crop(resize_short_side(array, image_size), image_size, image_size)


def _fitted_masks(masks: list[np.ndarray], image_size: int, dropped: Counter) -> list[np.ndarray]:
    """The masks that are non-empty after fitting; the others counted in `dropped` by reason."""
    kept = []
    for mask in masks:
        fitted = _fit(mask, image_size) if mask.any() else mask
        if fitted.any():
            kept.append(fitted)
        else:
            dropped["masks", "outside the crop" if mask.any() else "empty annotation"] += 1
    return kept


def _prepared(source: CocoSource, image_size: int, skips: SkipLog, dropped: Counter) -> Iterator[EncodedRecord]:
    dropped.update(source.dropped)
    for index in range(len(source)):
        try:
            record = source[index]
        except DataError as err:
            skips.handle(str(err))
            continue
        masks = _fitted_masks(record.masks, image_size, dropped)
        if masks:
            image = encode_png(_fit(record.image, image_size))
            yield EncodedRecord(record.id, image, ".png", [encode_png(m) for m in masks])
        else:
            dropped["images", "no mask left"] += 1


def coco_records(
    coco: COCO,
    image_dir: str | os.PathLike,
    category: str,
    *,
    image_size: int = 256,
    include_crowd: bool = True,
    skips: SkipLog | None = None,
    dropped: Counter | None = None,
) -> Iterator[EncodedRecord]:
    """Prepared records of one category (`image_size` 0 keeps the original size).

    The category is checked at once (`DataError` if unknown); records are made lazily, and what
    is left out is counted in `dropped` as ('images' | 'masks', reason).
    """
    source = CocoSource(coco, image_dir, category, include_crowd=include_crowd)
    return _prepared(source, image_size, skips or SkipLog(), Counter() if dropped is None else dropped)


def coco_splits(
    root: str | os.PathLike,
    category_a: str,
    category_b: str,
    recipe: CocoRecipe = CocoRecipe(),
    *,
    skips: SkipLog | None = None,
    drops: DropTally | None = None,
) -> dict[str, Iterator[EncodedRecord]]:
    """{'<phase>A': records of category_a, '<phase>B': ...} for each (phase, json, images) split."""
    drops = DropTally() if drops is None else drops
    out = {}
    for phase, annotation_file, image_dir in recipe.splits:
        coco = load_coco(Path(root) / annotation_file)
        for domain, category in (("A", category_a), ("B", category_b)):
            out[f"{phase}{domain}"] = coco_records(
                coco, Path(root) / image_dir, category, image_size=recipe.image_size,
                include_crowd=recipe.include_crowd, skips=skips, dropped=drops[f"{phase}{domain}"],
            )
    return out
