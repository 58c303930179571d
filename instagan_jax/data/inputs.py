"""What `instagan translate` reads: images with their instance masks, from a reference-layout folder,
a folder of mask files, or a COCO results JSON (what Detectron2 / Mask R-CNN write).

COCO results: a JSON list of `{image_id, category_id, segmentation (RLE), score}`. Image ids map to
files through `image_info` (any COCO JSON with `images: [{id, file_name}]`, e.g. the annotations file
the detector ran on; every image of the folder must be listed; its `categories` let `category` be a
name), or else through the file stem, which must then be the id, zero padding allowed (`139.jpg` or
`000000000139.jpg` is image 139).
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from instagan_jax.data.coco import ann_to_mask, category_id, load_coco
from instagan_jax.data.errors import DataError
from instagan_jax.data.folder import check_mask_size, image_index, scan_folder
from instagan_jax.data.imageio import read_image, read_mask

RESULT_KEYS = ("image_id", "category_id", "segmentation", "score")


@dataclasses.dataclass(frozen=True)
class MaskFile:
    """An instance mask stored as an image file (0 = background)."""

    path: Path

    def read(self) -> np.ndarray:
        """uint8 (H, W); `DataError` naming the file if unreadable."""
        return read_mask(self.path)

    def __str__(self) -> str:
        return str(self.path)


@dataclasses.dataclass(frozen=True)
class DetectionMask:
    """An instance mask given as the RLE segmentation of detection `index` in a results file."""

    segmentation: dict
    results: Path
    index: int

    def read(self) -> np.ndarray:
        """uint8 (H, W), 0 or 255; `DataError` naming the detection if it does not decode."""
        try:
            height, width = self.segmentation["size"]
            return ann_to_mask(self.segmentation, height, width) * np.uint8(255)
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise DataError(f"{self}: bad RLE segmentation ({err!r})") from err

    def __str__(self) -> str:
        return f"detection {self.index} of {self.results}"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One image to translate and its instance masks, in input order."""

    name: str  # path relative to the image folder, without extension
    image: Path
    masks: tuple[MaskFile | DetectionMask, ...]

    def read(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """RGB uint8 (H, W, 3) and uint8 (H, W) masks; `DataError` naming the file at fault."""
        image = read_image(self.image)
        return image, [check_mask_size(mask.read(), mask, image, self.image) for mask in self.masks]


def folder_entries(image_dir: str | Path, mask_dir: str | Path) -> list[Entry]:
    """Images of `image_dir` with masks `mask_dir/NAME_<i>.png` (indices in order, gaps allowed)."""
    return [Entry(name, image, tuple(MaskFile(path) for path in masks))
            for name, image, masks in scan_folder(Path(image_dir), Path(mask_dir))]


def source_folder(folder: str | Path, direction: str) -> Path:
    """`folder`, or its `testA` / `testB` (picked by `direction`, 'AtoB' / 'BtoA') when it holds them."""
    folder = Path(folder).resolve()
    test = folder / f"test{direction[0]}"
    return test if test.is_dir() else folder


def image_entries(folder: str | Path, direction: str) -> list[Entry]:
    """Every image under `folder` (or its test split, as `source_folder`), without masks: the inputs of
    a method that translates images alone; `DataError` when the folder is missing or holds no image."""
    image_dir = source_folder(folder, direction)
    return [Entry(name, image_dir / rel, ()) for name, rel in image_index(image_dir).items()]


def layout_entries(folder: str | Path, direction: str) -> list[Entry]:
    """A reference-layout folder `X` with masks in the sibling `X_seg`; or a data root holding
    `testA` / `testB`, of which `direction` ('AtoB' / 'BtoA') picks the source domain."""
    image_dir = source_folder(folder, direction)
    return folder_entries(image_dir, image_dir.parent / f"{image_dir.name}_seg")


def _read_results(results: Path) -> list[dict[str, Any]]:
    """The detections of a COCO results file; `DataError` naming the file and the bad detection."""
    try:
        detections = json.loads(results.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise FileNotFoundError(f"COCO results file {results} does not exist") from err
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read COCO results file {results}: {err}") from err
    if not isinstance(detections, list):
        raise DataError(f"{results} is not a COCO results file: expected a JSON list of detections "
                        f"{{{', '.join(RESULT_KEYS)}}}")
    for index, detection in enumerate(detections):
        missing = [key for key in RESULT_KEYS if not isinstance(detection, dict) or key not in detection]
        if missing:
            raise DataError(f"detection {index} of {results} lacks {', '.join(missing)}")
        if not isinstance(detection["segmentation"], dict) or "size" not in detection["segmentation"]:
            raise DataError(f"detection {index} of {results}: segmentation must be an RLE "
                            "{size: [height, width], counts}")
    return detections


def _category(category: str, info, detections: list[dict[str, Any]], results: Path) -> int:
    """The category id `category` names (an id; a name where the image info has categories)."""
    if info is not None and info.cats:
        if not category.isdigit():
            return category_id(info, category)
        if int(category) not in info.cats:
            known = ", ".join(f"{c['id']} {c['name']}" for c in info.cats.values())
            raise DataError(f"category {category} not found in {info.source_file}; known categories: {known}")
        return int(category)
    if not category.isdigit():
        raise DataError(f"category {category!r} is a name: give its id, or --image-info with a COCO JSON "
                        "whose categories name it")
    seen = sorted({detection["category_id"] for detection in detections})
    if int(category) not in seen:
        raise DataError(f"category {category} occurs in no detection of {results} "
                        f"(categories there: {', '.join(map(str, seen)) or 'none'})")
    return int(category)


def _image_ids(images: dict[str, Path], image_dir: Path, info) -> dict[str, int]:
    """{image name: COCO image id}: from the image info's file names, else from the file stems."""
    if info is not None:
        by_file = {image["file_name"]: image_id for image_id, image in info.imgs.items()}
        unlisted = [rel for rel in images.values() if rel.as_posix() not in by_file]
        if unlisted:
            raise DataError(f"image {image_dir / unlisted[0]} is not listed in the images of {info.source_file}"
                            f" ({len(unlisted)} image(s) unlisted)")
        return {name: by_file[rel.as_posix()] for name, rel in images.items()}
    unnamed = [rel for name, rel in images.items() if not Path(name).name.isdigit()]
    if unnamed:
        raise DataError(f"cannot tell the COCO image id of {image_dir / unnamed[0]}: name the files by "
                        "their id (139.jpg, 000000000139.jpg) or give --image-info with the images' ids")
    return {name: int(Path(name).name) for name in images}


def detection_entries(image_dir: str | Path, results: str | Path, category: str, *,
                      min_score: float = 0.5, image_info: str | Path | None = None) -> list[Entry]:
    """Every image of `image_dir`, with its detections of `category` scoring at least `min_score` as
    instances (in results order); see the module doc for how ids map to files."""
    image_dir, results = Path(image_dir), Path(results)
    images = image_index(image_dir)
    info = load_coco(image_info) if image_info is not None else None
    detections = _read_results(results)
    wanted = _category(category, info, detections, results)
    ids = _image_ids(images, image_dir, info)
    masks = defaultdict(list)
    for index, detection in enumerate(detections):
        if detection["category_id"] == wanted and detection["score"] >= min_score:
            masks[detection["image_id"]].append(DetectionMask(detection["segmentation"], results, index))
    missing = sorted(set(masks) - set(ids.values()))
    if missing:
        raise FileNotFoundError(f"{results} has detections of image id {missing[0]} but {image_dir} has no "
                                f"image with that id ({len(missing)} id(s) missing)")
    return [Entry(name, image_dir / rel, tuple(masks[ids[name]])) for name, rel in images.items()]
