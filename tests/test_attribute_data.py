"""Attribute-labelled data (LOMIT): the synthetic attribute shapes, CelebA's layout, the loader, loop's branch."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest
from data_helpers import save

from instagan_jax import data, loop
from instagan_jax.config import DataConfig
from instagan_jax.data import (
    AttributeLoader,
    AttributeShapesSource,
    CelebASource,
    DataError,
    TransformConfig,
)
from instagan_jax.data.sources import open_data  # noqa: E402
from instagan_jax.data.transforms import to_unit_range
from instagan_jax.methods import load_config

CROP = TransformConfig(load_size=None, crop_size=(64, 64), flip=True)
MIN_EXTENT, MAX_EXTENT = 0.15 * 72, 0.35 * 72  # the default object_size, in pixels of a 72x72 image


def _records(count, seed=0):
    source = AttributeShapesSource(count, seed=seed)
    return [source[i] for i in range(count)]


def _row_means(record):
    """Mean brightness (mean of R, G, B) of the object's pixels in each row that holds the object."""
    brightness = record.image.astype(np.float64).mean(axis=2)
    return np.array([brightness[y][record.mask[y]].mean() for y in np.flatnonzero(record.mask.any(axis=1))])


def test_shapes_source_is_deterministic_picklable_and_random_access():
    source = AttributeShapesSource(20, seed=3)
    again = pickle.loads(pickle.dumps(source))
    assert len(source) == 20 and source.attributes == ("blue", "striped")
    for i in (0, 7, 19):
        a, b = source[i], again[i]
        assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
        assert np.array_equal(a.labels, b.labels) and a.id == b.id == f"attr_shapes_{i:06d}"
        assert a.image.shape == (72, 72, 3) and a.image.dtype == np.uint8
        assert a.mask.dtype == bool and a.labels.dtype == np.float32 and set(a.labels) <= {0.0, 1.0}
    assert not np.array_equal(source[0].image, AttributeShapesSource(20, seed=4)[0].image)
    with pytest.raises(IndexError):
        source[20]


def test_masks_are_whole_objects_inside_the_image():
    for record in _records(100):
        rows, cols = np.flatnonzero(record.mask.any(axis=1)), np.flatnonzero(record.mask.any(axis=0))
        height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        # a disc or square cut by the border would be shorter along one side
        assert abs(height - width) <= 1, record.id
        assert MIN_EXTENT - 1 <= height <= MAX_EXTENT + 1, record.id


def test_labels_agree_with_the_pixels():
    striped_seen = 0
    for record in _records(200):
        inside = record.image[record.mask].astype(np.float64)
        blue, striped = record.labels
        assert (inside[:, 2].mean() > inside[:, 0].mean()) == bool(blue), record.id
        means = _row_means(record)
        # plain: one flat colour (variance 0); striped: rows at full and half brightness (variance >= ~200)
        assert (means.var() > 50.0) == bool(striped), (record.id, means.var())
        if striped:
            striped_seen += 1
            assert np.abs(means[8:] - means[:-8]).max() < 1.0, record.id  # period 8
            assert np.abs(means[4:] - means[:-4]).min() > 30.0, record.id  # rows 4 apart: full vs half
    assert striped_seen > 50


def test_background_is_independent_of_the_labels_and_labels_are_balanced():
    records = _records(400)
    labels = np.array([r.labels for r in records])
    background = np.array([r.image[~r.mask].astype(np.float64).mean(axis=0) for r in records])  # (N, 3)
    for a, name in enumerate(AttributeShapesSource.attributes):
        ones = labels[:, a] == 1
        # binomial: 200 +- 4 standard deviations (10)
        assert abs(ones.sum() - 200) < 40, (name, ones.sum())
        group_1, group_0 = background[ones], background[~ones]
        standard_error = np.sqrt(group_1.var(axis=0) / len(group_1) + group_0.var(axis=0) / len(group_0))
        difference = np.abs(group_1.mean(axis=0) - group_0.mean(axis=0))
        assert (difference < 4 * standard_error).all(), (name, difference, standard_error)
    both = (labels == 1).all(axis=1).sum()
    assert abs(both - 100) < 4 * np.sqrt(400 * 0.25 * 0.75)  # the two attributes independent


def _loader(source, **options):
    return AttributeLoader(source, **{"batch_size": 4, "transform": CROP, "seed": 0, **options})


def test_loader_batch_layout():
    with _loader(AttributeShapesSource(12)) as loader:
        batch = next(loader)
    assert sorted(batch) == ["has_mask", "id", "img", "labels", "mask"]
    assert batch["img"].shape == (4, 64, 64, 3) and batch["img"].dtype == np.float32
    assert -1.0 <= batch["img"].min() and batch["img"].max() <= 1.0
    assert batch["labels"].shape == (4, 2) and batch["labels"].dtype == np.float32
    assert set(np.unique(batch["labels"])) <= {0.0, 1.0}
    assert batch["mask"].shape == (4, 64, 64, 1) and batch["mask"].dtype == np.float32
    assert set(np.unique(batch["mask"])) == {0.0, 1.0}
    assert batch["has_mask"].dtype == bool and batch["has_mask"].all()
    assert batch["id"].shape == (4,) and all(i.startswith("attr_shapes_") for i in batch["id"])
    assert loader.batches_per_epoch == 3


def _find_crop(record, image):
    """The (top, left, flip) that turns the record's image into `image` exactly."""
    for top in range(record.image.shape[0] - 63):
        for left in range(record.image.shape[1] - 63):
            for flip in (False, True):
                crop = record.image[top : top + 64, left : left + 64][:, :: -1 if flip else 1]
                if np.array_equal(to_unit_range(crop), image):
                    return top, left, flip
    raise AssertionError(f"{record.id}: no crop of the record gives the batch image")


def test_loader_crops_and_flips_the_mask_with_the_image():
    source = AttributeShapesSource(16, seed=1)
    with _loader(source) as loader:
        batches = [next(loader) for _ in range(4)]
    flips = set()
    for batch in batches:
        for img, mask, labels, name in zip(batch["img"], batch["mask"][..., 0], batch["labels"], batch["id"]):
            record = source[int(name.rsplit("_", 1)[1])]
            np.testing.assert_array_equal(labels, record.labels)
            top, left, flip = _find_crop(record, img)
            flips.add(flip)
            expected = record.mask[top : top + 64, left : left + 64][:, :: -1 if flip else 1]
            np.testing.assert_array_equal(mask, expected.astype(np.float32))
            # the masked pixels have the object's colour: blue minus red >= 0.4 (of [-1, 1]) the right way
            object_pixels = img[mask == 1]
            blue_minus_red = (object_pixels[:, 2] - object_pixels[:, 0]) * (1 if labels[0] else -1)
            assert object_pixels.size and blue_minus_red.min() > 0.4, name
    assert flips == {False, True}


def test_loader_resumes_exactly():
    source = AttributeShapesSource(10)
    first = _loader(source, batch_size=3)
    [next(first) for _ in range(2)]
    state = json.loads(json.dumps(first.get_state()))
    expected = [next(first) for _ in range(3)]  # crosses the end of the first epoch
    resumed = _loader(source, batch_size=3)
    resumed.set_state(state)
    for want, got in zip(expected, [next(resumed) for _ in range(3)]):
        assert all(np.array_equal(want[k], got[k]) for k in want)
    with pytest.raises(ValueError, match="different pipeline"):
        _loader(source, batch_size=3, seed=1).set_state(state)


def test_two_shards_serve_disjoint_ids_in_an_epoch():
    source = AttributeShapesSource(12)
    shards = [_loader(source, batch_size=3, num_epochs=1, shard_index=i, shard_count=2) for i in range(2)]
    ids = [[i for batch in shard for i in batch["id"]] for shard in shards]
    assert len(ids[0]) == len(ids[1]) == 6
    assert not set(ids[0]) & set(ids[1]) and len(set(ids[0]) | set(ids[1])) == 12


# ---------------------------------------------------------------- CelebA on a tiny fake layout

NAMES = ("5_o_Clock_Shadow", "Black_Hair", "Blond_Hair", "Brown_Hair", "Male", "Smiling")
VALUES = np.array([[-1, 1, -1, -1, 1, 1], [1, -1, 1, -1, -1, 1], [-1, -1, -1, 1, 1, -1],
                   [1, 1, -1, -1, -1, -1], [-1, -1, 1, -1, 1, 1], [1, -1, -1, 1, -1, -1]])
GREEN, BLUE, RED = (0, 255, 0), (0, 0, 255), (255, 0, 0)


def _marker_image():
    """178 wide, 218 high: 20 red rows above and below the central 178x178, whose left half is green and right
    half blue."""
    image = np.zeros((218, 178, 3), dtype=np.uint8)
    image[:20], image[198:] = RED, RED
    image[20:198, :89], image[20:198, 89:] = GREEN, BLUE
    return image


def _attr_lines(values=VALUES):
    rows = [f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in row) for i, row in enumerate(values)]
    return [str(len(values)), " ".join(NAMES), *rows]


def _celeba(tmp_path, partition=True):
    root = tmp_path / "celeba"
    for i in range(len(VALUES)):
        save(root / "img_align_celeba" / f"{i + 1:06d}.jpg", _marker_image())
    (root / "list_attr_celeba.txt").write_text("\n".join(_attr_lines()) + "\n")
    if partition:
        phases = [0, 0, 0, 0, 1, 2]
        (root / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(phases)))
    return root


def test_celeba_labels_and_partition(tmp_path):
    root = _celeba(tmp_path)
    everything = CelebASource(root, attributes=("Smiling", "Male"), phase="all", image_size=32)
    assert len(everything) == 6 and everything.attributes == ("Smiling", "Male")
    np.testing.assert_array_equal(everything.labels, (VALUES[:, [5, 4]] == 1).astype(np.float32))
    assert everything[1].labels.tolist() == [1.0, 0.0] and everything[1].mask is None
    assert everything[1].id == "000002"
    phases = {phase: CelebASource(root, phase=phase) for phase in ("train", "val", "test")}
    assert [len(phases["train"]), phases["val"][0].id, phases["test"][0].id] == [4, "000005", "000006"]
    np.testing.assert_array_equal(phases["test"].labels, (VALUES[5:, 1:] == 1).astype(np.float32))
    assert pickle.loads(pickle.dumps(phases["val"]))[0].id == "000005"


def test_celeba_centre_crop_and_resize(tmp_path):
    pixels = CelebASource(_celeba(tmp_path), phase="all", image_size=32)[0].image
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    image = pixels.astype(int)
    # no red band (it lies outside the central square); left half green, right half blue (JPEG: +-40)
    assert image[..., 0].max() < 40
    np.testing.assert_allclose(image[:, :14].reshape(-1, 3).mean(axis=0), GREEN, atol=40)
    np.testing.assert_allclose(image[:, 18:].reshape(-1, 3).mean(axis=0), BLUE, atol=40)


def test_celeba_errors(tmp_path):
    with pytest.raises(DataError, match="img_align_celeba not found.*list_attr_celeba.txt"):
        CelebASource(tmp_path / "nowhere")
    root = _celeba(tmp_path)
    with pytest.raises(ValueError, match="Wavy_Hair.*known: " + ", ".join(NAMES)):
        CelebASource(root, attributes=("Male", "Wavy_Hair"))
    with pytest.raises(ValueError, match="phase must be train, val, test or all"):
        CelebASource(root, phase="dev")
    lines = _attr_lines()
    table = root / "list_attr_celeba.txt"
    table.write_text("\n".join([*lines[:4], lines[4].rsplit(" ", 1)[0], *lines[5:]]))  # line 5 lacks a value
    with pytest.raises(DataError, match=r"list_attr_celeba.txt:5: expected a file name and 6 values"):
        CelebASource(root)
    table.write_text("\n".join([*lines[:6], lines[6].replace("-1", " 0"), *lines[7:]]))
    with pytest.raises(DataError, match=r"list_attr_celeba.txt:7:"):
        CelebASource(root)
    table.write_text("\n".join(["7", *lines[1:]]))
    with pytest.raises(DataError, match="says 7 images but lists 6"):
        CelebASource(root)
    table.write_text("\n".join(lines))
    (root / "img_align_celeba" / "000003.jpg").unlink()
    with pytest.raises(DataError, match=r"000003.jpg: listed in .*list_attr_celeba.txt but missing"):
        CelebASource(root)[2]
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(ValueError, match="phase 'train' needs .*list_eval_partition.txt"):
        CelebASource(root)
    assert len(CelebASource(root, phase="all")) == 6


def test_loader_skips_and_counts_a_missing_celeba_image(tmp_path):
    root = _celeba(tmp_path, partition=False)
    (root / "img_align_celeba" / "000003.jpg").unlink()
    source = CelebASource(root, phase="all", image_size=24)
    transform = TransformConfig(load_size=None, crop_size=(20, 20))
    with AttributeLoader(source, batch_size=6, transform=transform, shuffle=False, skip_bad=True) as loader:
        batch = next(loader)
        assert "000003" not in batch["id"] and loader.skips.count == 1
    assert not batch["has_mask"].any() and not batch["mask"].any()
    with pytest.raises(DataError, match="000003.jpg"):
        next(AttributeLoader(source, batch_size=6, transform=transform, shuffle=False))


# ---------------------------------------------------------------- opening from a data config


def test_open_attributes_kinds_and_options(tmp_path):
    shapes = data.open_attributes("attribute_shapes", size=5, height=40, width=40)
    assert len(shapes) == 5 and shapes[0].image.shape == (40, 40, 3)
    assert len(data.open_attributes("celeba", root=_celeba(tmp_path), phase="val")) == 1
    with pytest.raises(ValueError, match="unknown option.*data.options.colour .its options: background, height"):
        data.open_attributes("attribute_shapes", colour="red")
    with pytest.raises(ValueError, match="'root' is required"):
        data.open_attributes("celeba")
    with pytest.raises(ValueError, match="data kind 'shapes' has no attribute labels"):
        data.open_attributes("shapes")


def test_make_loader_serves_attribute_batches_and_checks_the_attribute_count():
    config = load_config("lomit_shapes", ["train.batch_size=2", "data.options.size=6", "data.options.height=36",
                                          "data.options.width=36", "data.crop_size=[32,32]"])
    with loop.make_loader(config) as loader:
        batch = next(loader)
    assert isinstance(loader, AttributeLoader) and loop.BATCH_KEYS["attributes"] == ("img", "labels")
    assert batch["img"].shape == (2, 32, 32, 3) and batch["labels"].shape == (2, 2)
    with pytest.raises(ValueError, match=r"data.options \{'size': 'ten'\} for data.kind 'attribute_shapes'"):
        open_data(DataConfig(kind="attribute_shapes", options={"size": "ten"}), "attributes")
    with pytest.raises(ValueError, match=r"model.n_attributes: 3, but the data labels 2 attribute\(s\) \['blue', "):
        loop.make_loader(dataclasses.replace(config, model=dataclasses.replace(config.model, n_attributes=3)))
