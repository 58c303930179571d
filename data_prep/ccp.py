"""The reference's Clothing Co-Parsing recipe, on the raw upstream layout.

`photos/ID.jpg`, `annotations/pixel-level/ID.mat` (key `groundtruth`, a label map),
`annotations/image-level/ID.mat` (key `tags`), `label_list.mat` (label names).
train{A,B}: every pixel-annotated photo that shows the category, with one mask (all its pixels
of that label); val{A,B}: photos whose image-level tags name it, without masks (as the
reference). Photos are kept as they are (original JPEG bytes, original size).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import scipy.io

from instagan_jax.data.errors import DataError, SkipLog
from instagan_jax.data.imageio import encode_png, read_image
from instagan_jax.data.records import EncodedRecord


def load_mat(path: str | os.PathLike, key: str) -> np.ndarray:
    """Array `key` of a MATLAB file; `DataError` naming the file if it is unreadable or lacks it."""
    try:
        content = scipy.io.loadmat(os.fspath(path))
    except (OSError, ValueError, TypeError, NotImplementedError, scipy.io.matlab.MatReadError) as err:
        raise DataError(f"cannot read MATLAB file {path}: {err}") from err
    if key not in content:
        names = sorted(k for k in content if not k.startswith("__"))
        raise DataError(f"MATLAB file {path} has no variable {key!r} (it has {names})")
    return content[key]


def ccp_labels(root: str | os.PathLike) -> list[str]:
    """Label names by label number, from `label_list.mat`."""
    cells = load_mat(Path(root) / "label_list.mat", "label_list").ravel()
    return [str(cell.ravel()[0]) if cell.size else "" for cell in cells]


def ccp_label(labels: list[str], name: str) -> int:
    """Label number of a category name; `DataError` listing the names if unknown."""
    if name not in labels:
        known = ", ".join(label for label in labels if label)
        raise DataError(f"CCP category {name!r} not in label_list.mat; known: {known}")
    return labels.index(name)


def _ids(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataError(f"CCP folder {folder} does not exist")
    return sorted(p.stem for p in folder.glob("*.mat"))


def _photo(root: Path, record_id: str) -> tuple[bytes, np.ndarray]:
    path = root / "photos" / f"{record_id}.jpg"
    image = read_image(path)  # decodes, so a corrupt photo is named here
    return path.read_bytes(), image


def ccp_train_records(root: str | os.PathLike, label: int, skips: SkipLog | None = None) -> Iterator[EncodedRecord]:
    """Pixel-annotated photos showing `label`, each with its single mask."""
    root, skips = Path(root), skips or SkipLog()
    for record_id in _ids(root / "annotations" / "pixel-level"):
        try:
            mat_path = root / "annotations" / "pixel-level" / f"{record_id}.mat"
            labels = load_mat(mat_path, "groundtruth")
            if not (labels == label).any():
                continue
            data, image = _photo(root, record_id)
            if image.shape[:2] != labels.shape:
                raise DataError(f"label map {mat_path} is {labels.shape[0]}x{labels.shape[1]} but "
                                f"its photo is {image.shape[0]}x{image.shape[1]}")
        except DataError as err:
            skips.handle(str(err))
            continue
        mask = (labels == label).astype(np.uint8) * np.uint8(255)
        yield EncodedRecord(record_id, data, ".jpg", [encode_png(mask)])


def ccp_val_records(root: str | os.PathLike, label: int, skips: SkipLog | None = None) -> Iterator[EncodedRecord]:
    """Photos with only image-level tags that include `label` (no masks)."""
    root, skips = Path(root), skips or SkipLog()
    for record_id in _ids(root / "annotations" / "image-level"):
        try:
            if not np.isin(load_mat(root / "annotations" / "image-level" / f"{record_id}.mat", "tags"), label).any():
                continue
            data, _ = _photo(root, record_id)
        except DataError as err:
            skips.handle(str(err))
            continue
        yield EncodedRecord(record_id, data, ".jpg", [])


def ccp_splits(
    root: str | os.PathLike, category_a: str = "jeans", category_b: str = "skirt", *, skips: SkipLog | None = None
) -> dict[str, Iterator[EncodedRecord]]:
    """{'trainA', 'trainB', 'valA', 'valB'} record streams (categories checked at once)."""
    labels = ccp_labels(root)
    out = {}
    for phase, make in (("train", ccp_train_records), ("val", ccp_val_records)):
        for domain, name in (("A", category_a), ("B", category_b)):
            out[f"{phase}{domain}"] = make(root, ccp_label(labels, name), skips)
    return out
