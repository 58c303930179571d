"""Geometry shared by the preparation recipes, with the rounding of torchvision 0.2.1."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

BILINEAR = Image.Resampling.BILINEAR


def resize_short_side(array: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize so that the short side is `size` (long side truncated, as `Resize(int)`)."""
    height, width = array.shape[:2]
    if min(height, width) == size:
        return array
    if width < height:
        new_w, new_h = size, int(size * height / width)
    else:
        new_w, new_h = int(size * width / height), size
    return np.asarray(Image.fromarray(array).resize((new_w, new_h), BILINEAR))


def resize_to_height(array: np.ndarray, height: int) -> np.ndarray:
    """Bilinear resize to `height`, width ceil(w / h * height) (the MHP recipe)."""
    src_h, src_w = array.shape[:2]
    width = math.ceil(src_w / src_h * height)
    if (src_h, src_w) == (height, width):
        return array
    return np.asarray(Image.fromarray(array).resize((width, height), BILINEAR))


def centre_crop(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre crop to (height, width) with `CenterCrop`'s rounding (zero-padded where too small)."""
    src_h, src_w = array.shape[:2]
    top, left = int(round((src_h - height) / 2.0)), int(round((src_w - width) / 2.0))
    return np.asarray(Image.fromarray(array).crop((left, top, left + width, top + height)))
