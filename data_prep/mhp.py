"""The reference's LV-MHP v1 recipe: one instance mask per person annotation.

Layout: `images/ID.jpg`, `annotations/ID_NN_MM.png` (one label map per person),
`train_list.txt`, `test_list.txt` (one `ID.jpg` per line). For each listed image, every person
whose label map contains the category gives one mask; image and masks are resized to height
`size[0]` (width rounded up) and centre-cropped to `size`; masks empty after cropping are
dropped, images left without a mask too; landscape images are skipped unless asked otherwise.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from data_prep.common import centre_crop, resize_to_height
from data_prep.drops import DropTally
from instagan_jax.data.errors import DataError, SkipLog
from instagan_jax.data.imageio import encode_png, read_image
from instagan_jax.data.records import EncodedRecord

#: LV-MHP v1 label numbers.
MHP_LABELS = {
    "background": 0, "hat": 1, "hair": 2, "sunglass": 3, "upper-clothes": 4, "skirt": 5, "pants": 6,
    "dress": 7, "belt": 8, "left-shoe": 9, "right-shoe": 10, "face": 11, "left-leg": 12, "right-leg": 13,
    "left-arm": 14, "right-arm": 15, "bag": 16, "scarf": 17, "torso-skin": 18,
}


def mhp_label(name: str) -> int:
    """Label number of an MHP category; `DataError` listing the names if unknown."""
    if name not in MHP_LABELS:
        raise DataError(f"MHP category {name!r} unknown; known: {', '.join(MHP_LABELS)}")
    return MHP_LABELS[name]


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """A person's label map as (H, W) integers (first channel of a colour file)."""
    try:
        with Image.open(path) as img:
            labels = np.asarray(img)
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read annotation {path}: {err}") from err
    return labels[..., 0] if labels.ndim == 3 else labels


def _annotations_by_id(folder: Path) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise DataError(f"MHP annotation folder {folder} does not exist")
    found: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.glob("*.png")):
        found[path.name.split("_")[0]].append(path)
    return found


def list_ids(root: str | os.PathLike, phase: str) -> list[str]:
    """Image ids of `<phase>_list.txt`."""
    path = Path(root) / f"{phase}_list.txt"
    if not path.is_file():
        raise DataError(f"MHP list {path} does not exist")
    return [line.strip().split(".")[0] for line in path.read_text().splitlines() if line.strip()]


def mhp_records(
    root: str | os.PathLike,
    phase: str,
    label: int,
    *,
    size: tuple[int, int] = (450, 300),
    skip_horizontal: bool = True,
    skips: SkipLog | None = None,
    dropped: Counter | None = None,
) -> Iterator[EncodedRecord]:
    """Prepared records of one category for the images of `<phase>_list.txt`; images showing the
    category that are left out, and masks, are counted in `dropped` as ('images' | 'masks', reason)."""
    root, skips = Path(root), skips or SkipLog()
    dropped = Counter() if dropped is None else dropped
    annotations = _annotations_by_id(root / "annotations")

    def fit(array: np.ndarray) -> np.ndarray:
        return centre_crop(resize_to_height(array, size[0]), size[0], size[1])

    for record_id in list_ids(root, phase):
        try:
            masks, shown, landscape = [], False, False
            for path in annotations.get(record_id, []):
                labels = read_label_map(path)
                if not (labels == label).any():
                    continue
                shown, landscape = True, skip_horizontal and labels.shape[1] > labels.shape[0]
                if landscape:
                    break
                mask = fit((labels == label).astype(np.uint8) * np.uint8(255))
                if mask.any():
                    masks.append((path, labels.shape, mask))
                else:
                    dropped["masks", "outside the crop"] += 1
            if landscape:
                dropped["images", "landscape"] += 1
            elif shown and not masks:
                dropped["images", "no mask left"] += 1
            if not masks:
                continue
            image_path = root / "images" / f"{record_id}.jpg"
            image = read_image(image_path)
            for path, shape, _ in masks:
                if shape != image.shape[:2]:
                    raise DataError(f"annotation {path} is {shape[0]}x{shape[1]} but its image "
                                    f"{image_path} is {image.shape[0]}x{image.shape[1]}")
        except DataError as err:
            skips.handle(str(err))
            continue
        yield EncodedRecord(record_id, encode_png(fit(image)), ".png", [encode_png(m) for _, _, m in masks])


def mhp_splits(
    root: str | os.PathLike,
    category_a: str = "pants",
    category_b: str = "skirt",
    *,
    size: tuple[int, int] = (450, 300),
    skip_horizontal: bool = True,
    skips: SkipLog | None = None,
    drops: DropTally | None = None,
) -> dict[str, Iterator[EncodedRecord]]:
    """{'trainA', 'trainB', 'testA', 'testB'} record streams (categories checked at once)."""
    labels = {"A": mhp_label(category_a), "B": mhp_label(category_b)}
    drops = DropTally() if drops is None else drops
    return {
        f"{phase}{domain}": mhp_records(root, phase, labels[domain], size=size, skip_horizontal=skip_horizontal,
                                        skips=skips, dropped=drops[f"{phase}{domain}"])
        for phase in ("train", "test") for domain in ("A", "B")
    }
