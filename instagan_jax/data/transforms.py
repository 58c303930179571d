"""Per-record transforms: resize, one random crop and flip for an image and all its masks,
scaling to [-1, 1], and instance selection (largest area first, padded to `ins_max` slots)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image

from instagan_jax.data.errors import DataError
from instagan_jax.data.records import Record

#: Resampling filters by name; 'area' is PIL's box filter (pixel-area averaging).
FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "area": Image.Resampling.BOX,
}


@dataclasses.dataclass(frozen=True)
class TransformConfig:
    """How a record becomes a training example.

    load_size: (H, W) every image and mask is resized to (None: keep the record's size).
    crop_size: (H, W) of the random crop taken after resizing (None: no crop).
    flip: random horizontal flip with probability 1/2.
    ins_max: number K of instance slots; the K largest masks are kept.
    image_filter, mask_filter: resampling filter names, keys of `FILTERS`.
    The defaults are the reference's COCO training settings (220 -> 200, flip, bicubic).
    """

    load_size: tuple[int, int] | None = (220, 220)
    crop_size: tuple[int, int] | None = (200, 200)
    flip: bool = True
    ins_max: int = 4
    image_filter: str = "bicubic"
    mask_filter: str = "bicubic"

    def __post_init__(self) -> None:
        for name in (self.image_filter, self.mask_filter):
            if name not in FILTERS:
                raise ValueError(f"unknown resize filter {name!r}; choose from {sorted(FILTERS)}")
        if self.ins_max < 0:
            raise ValueError(f"ins_max must be >= 0, got {self.ins_max}")
        if self.load_size is not None and self.crop_size is not None:
            if any(c > s for c, s in zip(self.crop_size, self.load_size)):
                raise ValueError(f"crop_size {self.crop_size} exceeds load_size {self.load_size}")


def check_crop_fits(cfg: TransformConfig, sources: Iterable[Any]) -> None:
    """ValueError, before any record is read, where no load_size resizes the records and the crop is
    larger than the records of a source whose size its options decide (an `image_size` attribute)."""
    if cfg.crop_size is None or cfg.load_size is not None:
        return
    for source in sources:
        size = getattr(source, "image_size", None)
        if size is not None and any(c > s for c, s in zip(cfg.crop_size, size)):
            fits = [min(c, s) for c, s in zip(cfg.crop_size, size)]
            raise ValueError(f"config key data.crop_size: {list(cfg.crop_size)} is larger than the {size[0]}x{size[1]} "
                             f"images the data options draw (data.options height and width); use a crop of at "
                             f"most {fits}, or set data.load_size")


def check_has_masks(sources: Iterable[Any]) -> None:
    """ValueError, before any record is read, where a source's listing shows no instance mask at all (a
    `mask_files` count of 0): an instance method would train on empty sets, every loss 0."""
    for source in sources:
        if getattr(source, "mask_files", None) == 0:
            where = getattr(source, "mask_folder", None)
            raise ValueError(f"{source!r} has no instance mask at all{f' ({where} holds none)' if where else ''}: "
                             "this method translates instances, so each domain needs mask files "
                             "(docs/DATA.md, the folder layout)")


def resize(array: np.ndarray, size: tuple[int, int] | None, filter_name: str) -> np.ndarray:
    """Resize a uint8 (H, W) or (H, W, 3) array to `size` = (H, W) with PIL; None keeps it."""
    if size is None or tuple(array.shape[:2]) == tuple(size):
        return array
    image = Image.fromarray(array).resize((size[1], size[0]), FILTERS[filter_name])
    return np.asarray(image)


@functools.lru_cache(maxsize=4096)
def pass_order(in_size: tuple[int, int], out_size: tuple[int, int], filter_name: str) -> str | None:
    """'hv' or 'vh': whether PIL resamples rows (horizontal pass) or columns first for these sizes
    (Pillow picks by the sizes and its version), found once by resizing a noise image; None
    where both orders give its result (e.g. 'nearest', which samples in one go)."""
    if in_size[0] == out_size[0] or in_size[1] == out_size[1]:
        return "hv"  # a single pass
    probe = np.random.default_rng(0).integers(0, 256, in_size, dtype=np.uint8)
    whole = resize(probe, out_size, filter_name)
    rows_first = resize(resize(probe, (in_size[0], out_size[1]), filter_name), out_size, filter_name)
    columns_first = resize(resize(probe, (out_size[0], in_size[1]), filter_name), out_size, filter_name)
    matches = [order for order, result in (("hv", rows_first), ("vh", columns_first)) if np.array_equal(result, whole)]
    return matches[0] if len(matches) == 1 else None


def _resample_lines(array: np.ndarray, length: int, axis: int, filter_name: str) -> np.ndarray:
    """One PIL pass to `length` along `axis` (1: each row, 0: each column), computed on the span of
    lines that hold a non-zero value only (an all-zero line stays zero)."""
    shape = list(array.shape)
    shape[axis] = length
    out = np.zeros(shape, dtype=np.uint8)
    lines = np.flatnonzero(array.any(axis=axis))
    if lines.size:
        span = slice(lines[0], lines[-1] + 1)
        if axis == 1:
            out[span] = resize(array[span], (span.stop - span.start, length), filter_name)
        else:
            out[:, span] = resize(array[:, span], (length, span.stop - span.start), filter_name)
    return out


def resize_mask(mask: np.ndarray, size: tuple[int, int] | None, filter_name: str) -> np.ndarray:
    """`resize` of a (H, W) mask, equal bit for bit, computed on the rows and columns that hold
    the mask only: PIL resamples every row, then every column (or the other way round, see
    `pass_order`), each with coefficients that depend on the sizes only, rounding to uint8 in
    between. So a small instance costs little."""
    if size is None or tuple(mask.shape) == tuple(size):
        return mask
    order = pass_order(tuple(mask.shape), tuple(size), filter_name)
    if order is None:
        return resize(mask, size, filter_name)
    passes = [(1, size[1]), (0, size[0])]
    for axis, length in passes if order == "hv" else passes[::-1]:
        mask = _resample_lines(mask, length, axis, filter_name)
    return mask


def to_unit_range(array: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1], computed as torchvision's ToTensor + Normalize(0.5, 0.5)."""
    scaled = array.astype(np.float32) / np.float32(255.0)
    return (scaled - np.float32(0.5)) / np.float32(0.5)


def draw_crop(
    height: int, width: int, cfg: TransformConfig, rng: np.random.Generator | None
) -> tuple[int, int, int, int, bool]:
    """(top, left, crop height, crop width, flip) for one record; rng None: centre crop, no flip."""
    crop_h, crop_w = cfg.crop_size if cfg.crop_size is not None else (height, width)
    if crop_h > height or crop_w > width:
        raise DataError(f"crop {crop_h}x{crop_w} is larger than the image {height}x{width} "
                        "(set load_size, or a smaller crop_size)")
    if rng is None:
        return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w, False
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    flip = bool(cfg.flip and rng.random() < 0.5)
    return top, left, crop_h, crop_w, flip


def order_by_area(masks: list[np.ndarray]) -> np.ndarray:
    """Indices of `masks` by decreasing area (sum of values), stable for ties."""
    areas = np.array([int(m.sum(dtype=np.int64)) for m in masks], dtype=np.int64)
    return np.argsort(-areas, kind="stable")


def check_sizes(record: Record) -> None:
    """`DataError` unless the record is RGB and every mask has its image's height and width."""
    image = record.image
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"{record.described()}: image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    for i, mask in enumerate(record.masks):
        if mask.shape != image.shape[:2]:
            raise DataError(
                f"{record.described()}: mask {i} is {mask.shape[0]}x{mask.shape[1]} but its image is "
                f"{image.shape[0]}x{image.shape[1]}"
            )


def transform_record(
    record: Record, cfg: TransformConfig, rng: np.random.Generator | None = None
) -> dict[str, np.ndarray | str]:
    """Record -> {'img' (H, W, 3), 'masks' (K, H, W, 1) float32 in [-1, 1], 'valid' (K,), 'id'}.

    One crop and flip (drawn from `rng`; None: centre crop, no flip) applies to the image and all
    masks. Masks are ordered by area after cropping, largest first; the K = `cfg.ins_max` largest
    are kept, the remaining slots are -1. A slot is valid if any of its pixels is > -1.
    """
    check_sizes(record)
    image = resize(record.image, cfg.load_size, cfg.image_filter)
    try:
        top, left, crop_h, crop_w, flip = draw_crop(image.shape[0], image.shape[1], cfg, rng)
    except DataError as err:
        raise DataError(f"{record.described()}: {err}") from err
    window = (slice(top, top + crop_h), slice(left, left + crop_w))
    step = -1 if flip else 1

    image = image[window][:, ::step]
    masks = [resize_mask(m, cfg.load_size, cfg.mask_filter)[window][:, ::step] for m in record.masks]
    keep = order_by_area(masks)[: cfg.ins_max]

    slots = np.full((cfg.ins_max, crop_h, crop_w, 1), -1.0, dtype=np.float32)
    for slot, index in enumerate(keep):
        slots[slot, :, :, 0] = to_unit_range(masks[index])
    valid = (slots > -1.0).any(axis=(1, 2, 3))
    return {"img": to_unit_range(image), "masks": slots, "valid": valid, "id": record.id}
