"""Reading and writing image and mask files with PIL, with errors that name the file."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np
from PIL import Image

from instagan_jax.data.errors import DataError

#: File name suffixes (lower case) recognised as images.
IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


def is_image_file(name: str | os.PathLike) -> bool:
    """True if the name ends with one of `IMAGE_EXTENSIONS` (any case)."""
    return os.path.splitext(os.fspath(name))[1].lower() in IMAGE_EXTENSIONS


def _open(path: str | os.PathLike, what: str, convert: Callable[[Image.Image], np.ndarray]) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return convert(img)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read {what} {os.fspath(path)}: {err}") from err


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3); `DataError` naming the file if unreadable."""
    return _open(path, "image", lambda img: np.asarray(img.convert("RGB")))


def mask_values(img: Image.Image) -> np.ndarray:
    """A mask image as uint8 (H, W), 0 = background: colour (and palette) masks give the largest of
    R, G, B per pixel, so a grey mask saved as RGB keeps its values and a red one is 255, not PIL's
    luminance 76; a mask whose values are only 0 and 1 is binary, 1 becoming 255."""
    if img.mode == "P" or {"R", "G", "B"} <= set(img.getbands()):
        mask = np.asarray(img.convert("RGB")).max(axis=2)
    else:
        mask = np.asarray(img.convert("L"))
    return mask * np.uint8(255) if mask.max(initial=0) == 1 else mask


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask file with `mask_values`; `DataError` naming the file if unreadable."""
    return _open(path, "mask", mask_values)


def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes of a uint8 (H, W) or (H, W, 3) array (level 1: fast, lossless all the same)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def is_rgb_file(path: str | os.PathLike) -> bool:
    """True if the image file decodes to 3-channel RGB as it is (header only)."""
    try:
        with Image.open(path) as img:
            return img.mode == "RGB"
    except (OSError, ValueError, SyntaxError):
        return False
