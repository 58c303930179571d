"""PNG sample grids like the reference's visuals: per direction, real / translated / reconstructed
image, then the real / translated / reconstructed union of the masks (first sample of the batch)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

COLUMNS = ("real_img", "fake_img", "rec_img", "real_union", "fake_union", "rec_union")


def to_uint8(x: np.ndarray) -> np.ndarray:
    """(H,W,C) in [-1,1] -> (H,W,3) uint8, as the reference's tensor2im (1 channel tiled to 3)."""
    x = np.asarray(x, np.float32)
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return ((np.clip(x, -1.0, 1.0) + 1.0) / 2.0 * 255.0).astype(np.uint8)


def join_tiles(tiles: list[np.ndarray], axis: int = 1, gap: int = 2) -> np.ndarray:
    """uint8 (H,W,3) tiles side by side (axis 1) or stacked (axis 0), `gap` white pixels apart."""
    shape = list(tiles[0].shape)
    shape[axis] = gap
    spacer = np.full(shape, 255, np.uint8)
    return np.concatenate([t for tile in tiles for t in (tile, spacer)][:-1], axis=axis)


def sample_grid(visuals_by_direction: dict, sample: int = 0, gap: int = 2) -> np.ndarray:
    """One row per direction (A->B, then B->A), the six COLUMNS side by side, `gap` white pixels apart."""
    rows = [join_tiles([to_uint8(np.asarray(getattr(visuals, name))[sample]) for name in COLUMNS], 1, gap)
            for visuals in visuals_by_direction.values()]
    return join_tiles(rows, 0, gap)


def _write_atomically(path: str | Path, write) -> Path:
    """Call `write(temporary path)`, then rename the file into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)
    return path


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a PNG atomically (a temporary file renamed into place)."""
    return _write_atomically(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def save_text(text: str, path: str | Path) -> Path:
    """Write a UTF-8 text file atomically."""
    return _write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
