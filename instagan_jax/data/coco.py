"""COCO instance annotations (pycocotools) as domains: one category name gives one domain."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from instagan_jax.data.errors import DataError
from instagan_jax.data.imageio import read_image
from instagan_jax.data.records import Record


def load_coco(annotation_file: str | os.PathLike) -> COCO:
    """Load and index an instances json quietly; `DataError` naming the file if it is unusable."""
    path = Path(annotation_file)
    if not path.is_file():
        raise DataError(f"COCO annotation file {path} does not exist")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco = COCO(str(path))
    except (OSError, ValueError, KeyError, TypeError, AssertionError) as err:
        raise DataError(f"cannot read COCO annotation file {path}: {err!r}") from err
    coco.source_file = str(path)
    return coco


def category_id(coco: COCO, name: str) -> int:
    """Id of the category called `name`; `DataError` listing the known names if there is none."""
    ids = coco.getCatIds(catNms=[name])
    where = getattr(coco, "source_file", "the annotations")
    if len(ids) > 1:
        raise DataError(f"COCO category name {name!r} is ambiguous in {where}: categories {sorted(ids)} have it")
    if not ids:
        known = sorted({c["name"] for c in coco.loadCats(coco.getCatIds())})
        raise DataError(f"COCO category {name!r} not found in {where}; known categories: {', '.join(known)}")
    return ids[0]


def ann_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation (polygons, uncompressed or compressed RLE) to uint8 0/1 (H, W)."""
    if isinstance(segmentation, list):  # polygons: one RLE per part, merged
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:  # compressed RLE
        rle = segmentation
    with warnings.catch_warnings():  # pycocotools' decode predates numpy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle)


class CocoSource:
    """Images with at least one annotation of `category`, each annotation one instance mask.

    `include_crowd` keeps crowd annotations as instances (the reference does); without it,
    `dropped` counts the crowd masks left out and the images left with none. Picklable: only
    the per-image file names, sizes and segmentations are kept, not the COCO index.
    """

    def __init__(
        self,
        annotations: str | os.PathLike | COCO,
        image_dir: str | os.PathLike,
        category: str,
        *,
        include_crowd: bool = True,
    ):
        coco = annotations if isinstance(annotations, COCO) else load_coco(annotations)
        self.image_dir, self.category = Path(image_dir), category
        self.annotation_file = getattr(coco, "source_file", "<COCO>")
        cat = category_id(coco, category)
        self.items: list[tuple[str, int, int, list[tuple[int, Any]]]] = []
        self.dropped: Counter[tuple[str, str]] = Counter()
        for image_id in sorted(coco.getImgIds(catIds=[cat])):
            info = coco.loadImgs([image_id])[0]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], catIds=[cat], iscrowd=None))
            segs = [(a["id"], a["segmentation"]) for a in anns if include_crowd or not a.get("iscrowd", 0)]
            self.dropped["masks", "crowd"] += len(anns) - len(segs)
            if segs:
                self.items.append((info["file_name"], info["height"], info["width"], segs))
            else:
                self.dropped["images", "crowd only"] += 1
        if not self.items:
            raise DataError(f"no image in {self.annotation_file} has a {category!r} annotation (empty domain)")

    def __len__(self) -> int:
        return len(self.items)

    def masks(self, index: int) -> list[np.ndarray]:
        """The 0/1 uint8 masks of record `index`, in annotation order."""
        file_name, height, width, segs = self.items[index]
        masks = []
        for ann_id, seg in segs:
            try:
                masks.append(ann_to_mask(seg, height, width))
            except (TypeError, ValueError, KeyError, AttributeError) as err:
                raise DataError(f"annotation {ann_id} of {file_name} in {self.annotation_file}: "
                                f"bad segmentation ({err!r})") from err
        return masks

    def __getitem__(self, index: int) -> Record:
        file_name, height, width, _ = self.items[index]
        path = self.image_dir / file_name
        image = read_image(path)
        if image.shape[:2] != (height, width):
            raise DataError(f"image {path} is {image.shape[0]}x{image.shape[1]} but "
                            f"{self.annotation_file} says {height}x{width}")
        masks = [m * np.uint8(255) for m in self.masks(index)]
        return Record(image=image, masks=masks, id=Path(file_name).stem, origin=str(path))

    def __repr__(self) -> str:
        return f"CocoSource({self.annotation_file!r}, {self.category!r}, {len(self)} images)"


def coco_sources(
    annotation_file: str | os.PathLike,
    image_dir: str | os.PathLike,
    category_a: str,
    category_b: str,
    *,
    include_crowd: bool = True,
) -> tuple[CocoSource, CocoSource]:
    """The two domains of a category pair from one instances json (loaded once)."""
    coco = load_coco(annotation_file)
    return (
        CocoSource(coco, image_dir, category_a, include_crowd=include_crowd),
        CocoSource(coco, image_dir, category_b, include_crowd=include_crowd),
    )
