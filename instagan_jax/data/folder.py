"""The reference's folder layout: `<phase>A/NAME.ext` with masks `<phase>A_seg/NAME_<i>.<ext>`.

Images and masks are paired explicitly by file name (relative path without extension), so any
image extension works, mask indices may have gaps, an image may have no mask at all, and there
is no limit on the number of masks.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from instagan_jax.data.errors import DataError
from instagan_jax.data.imageio import encode_png, is_image_file, read_image, read_mask
from instagan_jax.data.records import EncodedRecord, Record

log = logging.getLogger(__name__)

_MASK_NAME = re.compile(r"(.+)_(\d+)")


def domain_dirs(root: str | os.PathLike, phase: str, domain: str) -> tuple[Path, Path]:
    """(image folder, mask folder) of one domain, e.g. (root/trainA, root/trainA_seg)."""
    split = f"{phase}{domain}"
    return Path(root) / split, Path(root) / f"{split}_seg"


def _image_files(folder: Path) -> list[Path]:
    """Image files under `folder` (recursive), as paths relative to it, sorted."""
    found = []
    for base, _, names in os.walk(folder):
        rel_base = Path(base).relative_to(folder)
        found.extend(rel_base / name for name in names if is_image_file(name))
    return sorted(found, key=lambda p: p.as_posix())


def _stem(rel: Path) -> str:
    return rel.with_suffix("").as_posix()


def image_index(image_dir: Path) -> dict[str, Path]:
    """{name: path relative to `image_dir`} of its image files (recursive), sorted by path; `DataError`
    if the folder is missing, holds no image or two images share a name."""
    if not image_dir.is_dir():
        raise DataError(f"image folder {image_dir} does not exist")
    images: dict[str, Path] = {}
    for rel in _image_files(image_dir):
        name = _stem(rel)
        if name in images:
            raise DataError(f"two images named {name!r}: {image_dir / images[name]} and {image_dir / rel}")
        images[name] = rel
    if not images:
        raise DataError(f"no image files in {image_dir} (empty domain)")
    return images


def scan_domain(
    root: str | os.PathLike, phase: str, domain: str
) -> list[tuple[str, Path, tuple[Path, ...]]]:
    """[(name, image path, mask paths by index)] of one domain, sorted by image path (`scan_folder`)."""
    return scan_folder(*domain_dirs(root, phase, domain))


def scan_folder(image_dir: Path, seg_dir: Path) -> list[tuple[str, Path, tuple[Path, ...]]]:
    """[(name, image path, mask paths by index)] of images in `image_dir`, masks `seg_dir/NAME_<i>.ext`.

    `DataError` if a folder is missing, there is no image, two images share a name or two masks
    share a name and index. Mask files that match no image are logged and ignored.
    """
    images = image_index(image_dir)
    if not seg_dir.is_dir():
        raise DataError(
            f"mask folder {seg_dir} does not exist (the reference layout puts it beside {image_dir} as "
            f"{image_dir.name}_seg; create it empty if the images have no masks)"
        )
    masks: dict[str, dict[int, Path]] = {name: {} for name in images}
    stray = []
    for rel in _image_files(seg_dir):
        match = _MASK_NAME.fullmatch(_stem(rel))
        if match is None or match.group(1) not in images:
            stray.append(rel)
            continue
        name, index = match.group(1), int(match.group(2))
        if index in masks[name]:
            raise DataError(
                f"two masks for {name!r} with index {index}: {seg_dir / masks[name][index]} and {seg_dir / rel}"
            )
        masks[name][index] = rel
    if stray:
        log.warning("%d file(s) in %s match no image in %s and are ignored, e.g. %s",
                    len(stray), seg_dir, image_dir, stray[0])
    return [
        (name, image_dir / rel, tuple(seg_dir / masks[name][i] for i in sorted(masks[name])))
        for name, rel in images.items()
    ]


def check_mask_size(mask: np.ndarray, mask_origin: object, image: np.ndarray, image_origin: object) -> np.ndarray:
    """The mask, or `DataError` naming both origins if its height and width differ from its image's."""
    if mask.shape[:2] != image.shape[:2]:
        raise DataError(
            f"mask {mask_origin} is {mask.shape[0]}x{mask.shape[1]} but its image {image_origin} "
            f"is {image.shape[0]}x{image.shape[1]}"
        )
    return mask


class FolderSource:
    """Random-access `Record`s of one domain of a reference-layout folder (see module doc)."""

    def __init__(self, root: str | os.PathLike, phase: str = "train", domain: str = "A"):
        self.root, self.phase, self.domain = Path(root), phase, domain
        self.entries = scan_domain(root, phase, domain)

    @property
    def mask_files(self) -> int:
        """How many instance mask files the domain has in all (known from the listing)."""
        return sum(len(mask_paths) for _, _, mask_paths in self.entries)

    @property
    def mask_folder(self) -> Path:
        return domain_dirs(self.root, self.phase, self.domain)[1]

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> Record:
        name, image_path, mask_paths = self.entries[index]
        image = read_image(image_path)
        masks = []
        for path in mask_paths:
            masks.append(check_mask_size(read_mask(path), path, image, image_path))
        return Record(image=image, masks=masks, id=name, origin=str(image_path))

    def __repr__(self) -> str:
        return f"FolderSource({str(self.root)!r}, {self.phase!r}, {self.domain!r}, {len(self)} images)"


def encode_record(record: Record) -> EncodedRecord:
    """PNG-encode a decoded record (image and every mask)."""
    return EncodedRecord(
        id=record.id,
        image=encode_png(record.image),
        image_suffix=".png",
        masks=[encode_png(np.asarray(m, dtype=np.uint8)) for m in record.masks],
    )


def write_folder(root: str | os.PathLike, splits: Mapping[str, Iterable[EncodedRecord]]) -> dict[str, int]:
    """Write records in the reference layout: `root/<split>/ID.ext`, `root/<split>_seg/ID_<i>.png`.

    `splits` maps split folder names (e.g. 'trainA') to records; both folders of every split are
    created, also when empty. Returns the number of images written per split.
    """
    counts = {}
    for split, records in splits.items():
        image_dir, seg_dir = Path(root) / split, Path(root) / f"{split}_seg"
        image_dir.mkdir(parents=True, exist_ok=True)
        seg_dir.mkdir(parents=True, exist_ok=True)
        counts[split] = 0
        for record in records:
            image_path = image_dir / f"{record.id}{record.image_suffix}"
            image_path.parent.mkdir(parents=True, exist_ok=True)
            image_path.write_bytes(record.image)
            for i, mask in enumerate(record.masks):
                mask_path = seg_dir / f"{record.id}_{i}.png"
                mask_path.parent.mkdir(parents=True, exist_ok=True)
                mask_path.write_bytes(mask)
            counts[split] += 1
    return counts
