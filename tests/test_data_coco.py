"""COCO through pycocotools: masks equal annToMask, crowd option, errors, the reference recipe,
and the `instagan_coco` TFDS builder read back with `tfds.data_source` without TensorFlow."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from data_helpers import SHARED_DATA, require, write_coco, write_tiny_coco
from PIL import Image

from instagan_jax.data import (
    CocoSource,
    DataError,
    ann_to_mask,
    coco_sources,
    load_coco,
)

# pycocotools' own annToMask, called here for comparison, predates numpy 2's copy keyword
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_coco")
    return root, write_tiny_coco(root)


def _assert_masks_equal_ann_to_mask(coco, source):
    for index, (_, height, width, segs) in enumerate(source.items):
        record = source[index]
        assert record.image.shape == (height, width, 3)
        for (ann_id, _), mask in zip(segs, record.masks):
            np.testing.assert_array_equal(mask, coco.annToMask(coco.anns[ann_id]) * 255)


def test_tiny_coco_masks_equal_ann_to_mask(tiny):
    root, annotations = tiny
    coco = load_coco(annotations)
    cats, dogs = coco_sources(annotations, root / "images", "cat", "dog")
    assert [len(r.masks) for r in (cats[0], cats[1])] == [2, 1] and len(dogs) == 2
    for source in (cats, dogs):
        _assert_masks_equal_ann_to_mask(coco, source)
    crowd = cats[0].masks[1]  # uncompressed RLE, iscrowd=1
    assert crowd[20:35, 30:55].all() and crowd.sum() == 15 * 25 * 255
    two_parts = dogs[1].masks[0]
    assert two_parts[2, 8] and two_parts[25, 25] and not two_parts[15, 15]


def test_crowd_option(tiny):
    root, annotations = tiny
    assert [len(CocoSource(annotations, root / "images", "cat")[i].masks) for i in range(2)] == [2, 1]
    no_crowd = CocoSource(annotations, root / "images", "cat", include_crowd=False)
    assert [len(no_crowd[i].masks) for i in range(2)] == [1, 1]


def test_errors_name_the_value_or_file(tiny, tmp_path):
    root, annotations = tiny
    known = r"category 'zebra' not found in .*annotations\.json; known categories: cat, dog"
    with pytest.raises(DataError, match=known):
        CocoSource(annotations, root / "images", "zebra")
    twice = write_coco(tmp_path / "twice", {1: (8, 8)}, [], ("cat", "cat"))
    ambiguous = r"category name 'cat' is ambiguous in .*annotations\.json: categories \[1, 2\]"
    with pytest.raises(DataError, match=ambiguous):
        CocoSource(twice, tmp_path / "twice" / "images", "cat")
    with pytest.raises(DataError, match="does not exist"):
        load_coco(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DataError, match=r"cannot read COCO annotation file .*broken\.json"):
        load_coco(tmp_path / "broken.json")
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (10, 10)).save(images / "000000000001.jpg")  # the json says 40x60
    (images / "000000000002.jpg").write_bytes(b"garbage")
    source = CocoSource(annotations, images, "cat")
    with pytest.raises(DataError, match=r"image .*000000000001\.jpg is 10x10 but .* says 40x60"):
        source[0]
    with pytest.raises(DataError, match=r"cannot read image .*000000000002\.jpg"):
        source[1]


def test_icevision_samples_equal_ann_to_mask():
    folder = require(SHARED_DATA / "icevision_coco_samples")
    coco = load_coco(folder / "annotations.json")
    checked = 0
    for ann in coco.dataset["annotations"]:
        info = coco.imgs[ann["image_id"]]
        mask = ann_to_mask(ann["segmentation"], info["height"], info["width"])
        np.testing.assert_array_equal(mask, coco.annToMask(ann))
        checked += 1
    assert checked == 36
    people, bottles = coco_sources(folder / "annotations.json", folder / "images", "person", "bottle")
    _assert_masks_equal_ann_to_mask(coco, people)
    _assert_masks_equal_ann_to_mask(coco, bottles)
    assert sum(len(bottles.items[i][3]) for i in range(len(bottles))) == 14  # one of them a crowd RLE


def test_reference_recipe(tiny):
    from data_prep.coco import coco_records

    root, annotations = tiny
    records = list(coco_records(load_coco(annotations), root / "images", "cat", image_size=16))
    assert [r.id for r in records] == ["000000000001", "000000000002"]
    image = np.asarray(Image.open(io.BytesIO(records[0].image)))
    assert image.shape == (16, 16, 3)
    masks = [np.asarray(Image.open(io.BytesIO(m))) for m in records[0].masks]
    # 40x60 -> short side 16: 16x24 (bilinear), centre crop columns 4..20
    assert all(m.shape == (16, 16) for m in masks) and all(m.any() for m in masks)
    expected = np.asarray(Image.fromarray(load_coco(annotations).annToMask(
        load_coco(annotations).anns[11]) * 255).resize((24, 16), Image.Resampling.BILINEAR))[:, 4:20]
    np.testing.assert_array_equal(masks[0], expected)


def test_tfds_builder_without_tensorflow(tiny, tmp_path):
    import tensorflow_datasets as tfds

    from data_prep.coco import CocoRecipe
    from data_prep.instagan_coco import Builder, pair_config
    from instagan_jax.data import tfds_data
    from instagan_jax.data.tfds_data import TfdsSource

    root, _ = tiny
    recipe = CocoRecipe(splits=(("train", "annotations.json", "images"),), image_size=24)
    builder = Builder(data_dir=str(tmp_path), config=pair_config("cat", "dog"), recipe=recipe)
    tfds_data.build(builder, root)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"trainA": 2, "trainB": 2}

    source = tfds.data_source("instagan_coco/cat_dog", split="trainA", data_dir=str(tmp_path))
    example = source[0]
    assert example["image"].shape == (24, 24, 3) and all(m.shape == (24, 24, 1) for m in example["masks"])
    records = TfdsSource("instagan_coco/cat_dog", "trainB", data_dir=tmp_path)
    ids = sorted(records[i].id for i in range(len(records)))
    assert ids == ["000000000001", "000000000003"]
    assert "tensorflow" not in sys.modules
    with pytest.raises(DataError, match=r"has no split 'valA'"):
        TfdsSource("instagan_coco/cat_dog", "valA", data_dir=tmp_path)
    with pytest.raises(DataError, match="no prepared TFDS data set 'instagan_coco/nope' in .*holds no version"):
        TfdsSource("instagan_coco/nope", "trainA", data_dir=tmp_path)
