"""Per-record transforms: one crop/flip for image and masks, area order, padding, validity."""

from __future__ import annotations

import numpy as np
import pytest
from data_helpers import box_mask

from instagan_jax.data import DataError, Record, TransformConfig, transform_record
from instagan_jax.data.transforms import order_by_area, resize, resize_mask


def _coded_record(height=40, width=50, boxes=((2, 3, 12, 20), (20, 25, 38, 47), (5, 30, 9, 34))):
    """Image whose red channel equals the union of the masks: alignment is checkable after any crop."""
    masks = [box_mask(height, width, *b) for b in boxes]
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = np.max(masks, axis=0)
    image[..., 1] = np.arange(width, dtype=np.uint8)[None, :]  # encodes the column, to see flips
    return Record(image=image, masks=masks, id="coded")


def test_one_crop_and_flip_for_image_and_all_masks():
    record = _coded_record()
    cfg = TransformConfig(load_size=None, crop_size=(30, 36), flip=True, ins_max=4, mask_filter="nearest")
    flips = set()
    for seed in range(12):
        example = transform_record(record, cfg, np.random.default_rng(seed))
        union = example["masks"][..., 0].max(axis=0)
        np.testing.assert_array_equal(union, example["img"][..., 0])
        columns = example["img"][0, :, 1]
        flips.add(bool(columns[0] > columns[-1]))
        assert example["img"].shape == (30, 36, 3) and example["masks"].shape == (4, 30, 36, 1)
    assert flips == {True, False}


def test_same_rng_same_example_and_no_rng_is_centre_crop():
    record = _coded_record()
    cfg = TransformConfig(load_size=(44, 54), crop_size=(40, 50))
    a = transform_record(record, cfg, np.random.default_rng(3))
    b = transform_record(record, cfg, np.random.default_rng(3))
    for key in ("img", "masks", "valid"):
        np.testing.assert_array_equal(a[key], b[key])
    centre = transform_record(record, TransformConfig(load_size=None, crop_size=(20, 30), flip=True))
    np.testing.assert_allclose(centre["img"][..., 1][0], np.arange(10, 40) / 127.5 - 1, atol=1e-6)


def test_masks_sorted_by_area_truncated_and_padded():
    record = _coded_record()  # areas: 170, 396, 16
    cfg = TransformConfig(load_size=None, crop_size=None, flip=False, ins_max=2)
    example = transform_record(record, cfg)
    areas = ((example["masks"] + 1) / 2).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(areas, [396, 170], atol=1e-4)
    wide = transform_record(record, TransformConfig(load_size=None, crop_size=None, flip=False, ins_max=6))
    np.testing.assert_array_equal(wide["valid"], [True, True, True, False, False, False])
    assert (wide["masks"][3:] == -1).all()
    assert wide["masks"].min() == -1 and wide["masks"].max() == 1 and wide["img"].dtype == np.float32
    none = transform_record(record, TransformConfig(load_size=None, crop_size=None, ins_max=0))
    assert none["masks"].shape == (0, 40, 50, 1) and none["valid"].shape == (0,)


def test_order_is_stable_and_cropped_away_masks_are_invalid():
    masks = [box_mask(10, 10, 0, 0, 2, 2), box_mask(10, 10, 5, 5, 9, 9), box_mask(10, 10, 8, 0, 10, 2),
             np.zeros((10, 10), np.uint8)]
    np.testing.assert_array_equal(order_by_area(masks), [1, 0, 2, 3])
    record = Record(np.zeros((10, 10, 3), np.uint8), [box_mask(10, 10, 0, 0, 2, 2)], "corner")
    cfg = TransformConfig(load_size=None, crop_size=(5, 5), flip=False, ins_max=2)
    example = transform_record(record, cfg, np.random.default_rng(0))
    top_left = example["masks"][0, 0, 0, 0] > -1
    assert example["valid"][0] == top_left and not example["valid"][1]


@pytest.mark.parametrize("name, binary", [("nearest", True), ("area", False), ("bicubic", False), ("bilinear", False)])
def test_mask_filters(name, binary):
    record = _coded_record()
    cfg = TransformConfig(load_size=(27, 33), crop_size=None, flip=False, ins_max=3, mask_filter=name)
    masks = transform_record(record, cfg)["masks"]
    values = np.unique(masks)
    assert set(values.tolist()) <= {-1.0, 1.0} if binary else len(values) > 2
    assert masks.min() >= -1 and masks.max() <= 1


@pytest.mark.parametrize("name", ["bicubic", "bilinear", "area", "nearest"])
def test_mask_resize_on_the_instance_span_equals_the_whole_resize(name):
    rng = np.random.default_rng(0)
    sizes = [((256, 256), (220, 220)), ((120, 80), (44, 44)), ((44, 120), (60, 44)), ((30, 90), (70, 20))]
    sizes += [(tuple(rng.integers(4, 90, 2)), tuple(rng.integers(4, 90, 2))) for _ in range(20)]
    for (height, width), size in sizes:
        top, left = rng.integers(0, height), rng.integers(0, width)
        mask = box_mask(height, width, top, left, rng.integers(top, height + 1), rng.integers(left, width + 1))
        mask = mask * (rng.random((height, width)) < 0.8)  # ragged edges
        for candidate in (mask, mask // 3, np.zeros_like(mask)):
            np.testing.assert_array_equal(resize_mask(candidate, size, name), resize(candidate, size, name),
                                          err_msg=f"{name}: {(height, width)} -> {size}")


def test_bad_settings_and_records():
    with pytest.raises(ValueError, match="unknown resize filter"):
        TransformConfig(mask_filter="lanczos3")
    with pytest.raises(ValueError, match="exceeds load_size"):
        TransformConfig(load_size=(10, 10), crop_size=(12, 10))
    record = _coded_record()
    record.masks[1] = record.masks[1][:-1]
    with pytest.raises(DataError, match="record coded: mask 1 is 39x50 but its image is 40x50"):
        transform_record(record, TransformConfig(load_size=None, crop_size=None))
    with pytest.raises(DataError, match="record coded: crop 41x10 is larger than the image 40x50"):
        transform_record(_coded_record(), TransformConfig(load_size=None, crop_size=(41, 10)))
