"""The built-in shapes data set: deterministic, exact masks, round vs angular, any size."""

from __future__ import annotations

import numpy as np
import pytest

from instagan_jax.data import ShapesSource, rectangularity, shapes_record
from instagan_jax.data.shapes import ROUND_ANGULAR_THRESHOLD


def test_deterministic_in_its_arguments():
    image, masks = shapes_record("A", 7, seed=3, height=64, width=80)
    again, masks_again = shapes_record("A", 7, seed=3, height=64, width=80)
    np.testing.assert_array_equal(image, again)
    assert len(masks) == len(masks_again) and all(np.array_equal(a, b) for a, b in zip(masks, masks_again))
    other, _ = shapes_record("A", 7, seed=4, height=64, width=80)
    assert not np.array_equal(image, other)
    assert not np.array_equal(image, shapes_record("B", 7, seed=3, height=64, width=80)[0])


@pytest.mark.parametrize("height, width", [(200, 200), (64, 96), (300, 180)])
def test_instances_and_masks(height, width):
    counts = []
    for domain in "AB":
        for index in range(30):
            image, masks = shapes_record(domain, index, height=height, width=width)
            assert image.shape == (height, width, 3) and image.dtype == np.uint8
            assert 1 <= len(masks) <= 6
            counts.append(len(masks))
            stack = np.stack(masks)
            assert stack.dtype == bool and stack.shape == (len(masks), height, width)
            assert stack.any(axis=(1, 2)).all() and (stack.sum(0) <= 1).all()  # non-empty, disjoint
            for mask in masks:  # an instance is one colour with mild shading: its pixels stay near their mean
                inside = image[mask].astype(float).mean(0)
                assert np.abs(image[mask].astype(float) - inside).max() < 80
    assert len(set(counts)) >= 4  # the count varies


def test_round_and_angular_domains_are_separable():
    scores = {domain: [rectangularity(m) for i in range(40) for m in shapes_record(domain, i)[1]]
              for domain in "AB"}
    assert max(scores["A"]) < ROUND_ANGULAR_THRESHOLD < min(scores["B"])
    assert abs(np.median(scores["A"]) - np.pi / 4) < 0.05 and np.median(scores["B"]) > 0.93
    assert rectangularity(np.zeros((5, 5), bool)) == 0.0


def test_object_size_sets_the_scale_and_is_checked():
    def median_area(object_size):
        return np.median([m.sum() for i in range(20) for m in shapes_record("B", i, 0, 72, 72, 2, object_size)[1]])

    assert median_area((0.1, 0.25)) > 1.8 * median_area((0.06, 0.2))
    source = ShapesSource("A", size=2, height=40, width=40, object_size=[0.2, 0.2])
    assert source.object_size == (0.2, 0.2) and "object_size=(0.2, 0.2)" in repr(source)
    for bad in ([0.3, 0.1], [0.0, 0.2], [0.1, 0.5], [0.1], "big"):
        with pytest.raises(ValueError, match="object_size"):
            ShapesSource("A", object_size=bad)


def test_source():
    source = ShapesSource("B", size=5, seed=1, height=48, width=40)
    record = source[4]
    assert len(source) == 5 and record.id == "shapesB_000004" and record.image.shape == (48, 40, 3)
    assert all(m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255} for m in record.masks)
    with pytest.raises(IndexError):
        source[5]
    with pytest.raises(ValueError, match="'A' or 'B'"):
        ShapesSource("C")


def _outside_objects(image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    return image[~np.any(masks, axis=0)].astype(float)


def test_background_kinds_from_textured_to_plain():
    spreads = {}
    for kind in ("textured", "smooth", "plain"):
        image, masks = shapes_record("A", 3, seed=1, height=48, width=48, background=kind)
        spreads[kind] = _outside_objects(image, masks).std(axis=0).max()
        step = np.abs(np.diff(image.astype(float), axis=1)).mean()  # fine grain shows as pixel-to-pixel steps
        spreads[f"{kind} step"] = step
    assert spreads["plain"] == 0.0  # one flat colour
    assert spreads["smooth"] > 1.0 and spreads["textured"] > 1.0
    assert spreads["smooth step"] < 0.5 * spreads["textured step"]
    with pytest.raises(ValueError, match="background must be one of textured, smooth, plain, got 'noisy'"):
        ShapesSource("A", background="noisy")


def test_axis_aligned_discs_and_squares_share_their_bounding_square():
    for index in range(10):
        (_, disc), (_, square) = (shapes_record(d, index, seed=2, height=40, width=40, max_instances=1,
                                                object_size=(0.2, 0.35), paired=True, rotate=False, elongated=0.0)
                                  for d in "AB")
        ys, xs = np.nonzero(square[0])
        box = np.zeros_like(square[0])
        box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
        assert np.array_equal(square[0], box)  # an axis-aligned square fills its bounding box
        assert abs(np.ptp(ys) - np.ptp(xs)) <= 1  # a square, not a rectangle
        assert (disc[0] & ~square[0]).sum() == 0 and disc[0].sum() > 0.7 * square[0].sum()  # inscribed disc
        assert rectangularity(disc[0]) < ROUND_ANGULAR_THRESHOLD <= rectangularity(square[0])


def test_elongated_sets_the_share_of_rectangles_and_is_checked():
    def aspects(elongated):
        out = []
        for index in range(30):
            ys, xs = np.nonzero(shapes_record("B", index, seed=5, height=64, width=64, max_instances=1,
                                              rotate=False, elongated=elongated)[1][0])
            out.append(min(np.ptp(ys), np.ptp(xs)) / max(np.ptp(ys), np.ptp(xs)))
        return np.array(out)

    assert (aspects(0.0) > 0.85).all() and (aspects(1.0) < 0.85).all()
    assert 0.2 < (aspects(0.5) < 0.85).mean() < 0.8
    with pytest.raises(ValueError, match=r"elongated .* must be in \[0, 1\], got 1.5"):
        ShapesSource("B", elongated=1.5)


def test_a_fixed_background_colour_is_the_same_in_every_image():
    for index in range(5):
        image, masks = shapes_record("B", index, height=32, width=32, background="plain",
                                     background_rgb=(140, 120, 100))
        assert (_outside_objects(image, masks) == [140, 120, 100]).all()
        textured, masks = shapes_record("B", index, height=32, width=32, background_rgb=(140, 120, 100))
        assert np.abs(_outside_objects(textured, masks).mean(axis=0) - [140, 120, 100]).max() < 25
    # the objects are those of the random-colour data (the colour draws are made either way)
    assert all(np.array_equal(a, b) for a, b in zip(shapes_record("A", 2, background_rgb=(9, 9, 9))[1],
                                                    shapes_record("A", 2)[1]))
    for bad in ([1, 2], [0, 0, 300], "grey"):
        with pytest.raises(ValueError, match="background_rgb must be null or"):
            ShapesSource("A", background_rgb=bad)
