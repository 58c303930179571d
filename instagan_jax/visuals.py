"""PNG sample grids like the reference's visuals: one row per direction of a method, its images side
by side (one sample of the batch), under a header strip that names the columns, beside a strip that
names each row."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def to_uint8(x: np.ndarray) -> np.ndarray:
    """(H,W,C) in [-1,1] -> (H,W,3) uint8, as the reference's tensor2im (1 channel tiled to 3)."""
    x = np.asarray(x, np.float32)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return ((np.clip(x, -1.0, 1.0) + 1.0) / 2.0 * 255.0).astype(np.uint8)


def text_tile(text: str, height: int, width: int, font: ImageFont.ImageFont) -> np.ndarray:
    """Black text centred on a white (height, width, 3) uint8 tile."""
    canvas = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(canvas).multiline_text((width / 2, height / 2), text, fill="black", font=font,
                                          anchor="mm", align="center", spacing=1)
    return np.asarray(canvas)


def join_tiles(tiles: list[np.ndarray], axis: int = 1, gap: int = 2) -> np.ndarray:
    """uint8 (H,W,3) tiles side by side (axis 1) or stacked (axis 0), `gap` white pixels apart."""
    shape = list(tiles[0].shape)
    shape[axis] = gap
    spacer = np.full(shape, 255, np.uint8)
    return np.concatenate([t for tile in tiles for t in (tile, spacer)][:-1], axis=axis)


def sample_grid(rows_by_label: Mapping[str, Mapping[str, np.ndarray]], sample: int = 0, gap: int = 2) -> np.ndarray:
    """A labelled grid: one row per entry of `rows_by_label` ({column label: (B,H,W,C) images in
    [-1, 1]}, the same columns in every row), sample `sample` of each, `gap` white pixels apart."""
    rows = [[to_uint8(np.asarray(images)[sample]) for images in row.values()] for row in rows_by_label.values()]
    column_labels = list(next(iter(rows_by_label.values())))
    height, width = rows[0][0].shape[:2]
    font = ImageFont.load_default(size=max(8, min(16, width // 6)))
    names = list(rows_by_label)
    side = int(max(font.getlength(name) for name in names)) + 6
    header_height = 2 * int(font.size) + 6
    header = [text_tile("", header_height, side, font)] + [text_tile(label, header_height, width, font)
                                                       for label in column_labels]
    labelled = [[text_tile(name, height, side, font)] + row for name, row in zip(names, rows)]
    return join_tiles([join_tiles(row, 1, gap) for row in [header] + labelled], 0, gap)


def _write_atomically(path: str | Path, write) -> Path:
    """Call `write(temporary path)`, then rename the file into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def check_writable_location(path: str | Path, what: str) -> None:
    """ValueError naming `what` (e.g. "--out") where the nearest existing folder at or above `path` is a
    file or cannot be written: checked before any heavy work."""
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {path}: {existing} is not writable")


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a PNG atomically (a temporary file renamed into place)."""
    return _write_atomically(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def write_text(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file atomically (a temporary file renamed into place)."""
    return _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
