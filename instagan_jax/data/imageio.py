"""Reading and writing image and mask files with PIL, with errors that name the file."""

from __future__ import annotations

import io
import os

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


def _open(path: str | os.PathLike, mode: str, what: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert(mode))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read {what} {os.fspath(path)}: {err}") from err


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3); `DataError` naming the file if unreadable."""
    return _open(path, "RGB", "image")


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask file to grey uint8 (H, W), 0 = background; `DataError` naming it if unreadable."""
    return _open(path, "L", "mask")


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
