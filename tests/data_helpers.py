"""Helpers for the data tests: where ../shared is, and tiny data sets written on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"
REFERENCE_DATA = SHARED / "parity" / "reference_data.npz"


def require(path: Path) -> Path:
    """Skip the test with a clear message where a shared file or folder is absent."""
    if not path.exists():
        pytest.skip(f"{path} not found: shared data and fixtures live in ../shared beside the project")
    return path


def save(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an image file (format from the suffix), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def write_npz_pngs(npz: np.lib.npyio.NpzFile, root: Path) -> Path:
    """Recreate the reference fixture's dataroot from its `png/<relpath>` entries."""
    for key in npz.files:
        if key.startswith("png/"):
            path = root / key[len("png/"):]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(npz[key].tobytes())
    return root


def random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def box_mask(height: int, width: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[top:bottom, left:right] = 255
    return mask


def write_coco(root: Path, sizes: dict[int, tuple[int, int]], anns: list[dict], names: tuple[str, ...]) -> Path:
    """A COCO-format set in `root`: random images `images/<id:012d>.jpg` of `sizes` (id -> (h, w)),
    annotations `anns`, categories `names` (ids 1, 2, ...). Returns the instances json path."""
    rng = np.random.default_rng(0)
    for image_id, (h, w) in sizes.items():
        save(root / "images" / f"{image_id:012d}.jpg", random_image(rng, h, w))
    for ann in anns:
        ann.setdefault("iscrowd", 0)
        ann.update(area=0.0, bbox=[0, 0, 1, 1])
    dataset = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": h, "width": w} for i, (h, w) in sizes.items()],
        "annotations": anns,
        "categories": [{"id": i, "name": name, "supercategory": "thing"} for i, name in enumerate(names, start=1)],
    }
    path = root / "annotations.json"
    path.write_text(json.dumps(dataset))
    return path


def write_tiny_coco(root: Path, names: tuple[str, str] = ("cat", "dog")) -> Path:
    """A COCO-format set: 3 images, categories `names` (ids 1, 2); polygon, compressed RLE,
    uncompressed RLE (crowd) and a 2-part polygon. Returns the instances json path."""
    from pycocotools import mask as mask_utils

    block = np.zeros((50, 30), dtype=np.uint8, order="F")
    block[10:30, 5:20] = 1
    compressed = mask_utils.encode(block)
    compressed["counts"] = compressed["counts"].decode()
    crowd = np.zeros((40, 60), dtype=np.uint8)
    crowd[20:35, 30:55] = 1
    runs, value, count = [], 0, 0  # uncompressed RLE: column-major run lengths starting with zeros
    for pixel in crowd.flatten(order="F"):
        if pixel != value:
            runs.append(count)
            value, count = pixel, 0
        count += 1
    runs.append(count)
    anns = [
        {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [[5, 5, 25, 5, 25, 20, 5, 20]]},
        {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": {"size": [40, 60], "counts": runs}},
        {"id": 13, "image_id": 1, "category_id": 2, "segmentation": [[40, 2, 58, 2, 50, 15]]},
        {"id": 21, "image_id": 2, "category_id": 1, "segmentation": compressed},
        {"id": 31, "image_id": 3, "category_id": 2,
         "segmentation": [[1, 1, 10, 1, 10, 10], [20, 20, 30, 20, 30, 30, 20, 30]]},
    ]
    return write_coco(root, {1: (40, 60), 2: (50, 30), 3: (32, 32)}, anns, names)


def write_fake_mhp(root: Path) -> None:
    """A tiny LV-MHP v1 layout: 5 images, label maps per person (pants 6, skirt 5)."""
    rng = np.random.default_rng(1)
    people = {  # id -> (height, width, [label map regions per person as (label, top, left, bottom, right)])
        "0001": (90, 60, [(6, 40, 5, 80, 25), (6, 40, 30, 80, 55), (5, 10, 10, 20, 20)]),
        "0002": (90, 60, [(5, 50, 10, 85, 50)]),
        "0003": (60, 90, [(6, 10, 10, 50, 40)]),  # landscape: skipped by default
        "0004": (90, 60, [(6, 0, 0, 90, 2)]),  # pants only in a border strip that the crop removes
        "0005": (90, 60, [(6, 40, 20, 80, 40), (5, 10, 20, 30, 40)]),
    }
    for record_id, (h, w, persons) in people.items():
        save(root / "images" / f"{record_id}.jpg", random_image(rng, h, w))
        for n, (label, top, left, bottom, right) in enumerate(persons, start=1):
            labels = np.zeros((h, w), dtype=np.uint8)
            labels[top:bottom, left:right] = label
            labels[0:3, 0:3] = 2  # some hair, never a target
            save(root / "annotations" / f"{record_id}_{len(persons):02d}_{n:02d}.png", labels)
    (root / "train_list.txt").write_text("0001.jpg\n0002.jpg\n0003.jpg\n")
    (root / "test_list.txt").write_text("0004.jpg\n0005.jpg\n")
