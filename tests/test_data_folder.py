"""The reference folder layout: parity with the reference loader, explicit pairing, bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from data_helpers import (
    REFERENCE_DATA,
    box_mask,
    random_image,
    require,
    save,
    write_npz_pngs,
)

from instagan_jax.data import DataError, FolderSource, TransformConfig, transform_record
from instagan_jax.data.transforms import resize, to_unit_range


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(npz, json meta, dataroot rebuilt from the npz's PNGs)."""
    npz = np.load(require(REFERENCE_DATA))
    meta = json.loads(REFERENCE_DATA.with_suffix(".json").read_text())
    root = write_npz_pngs(npz, tmp_path_factory.mktemp("reference_dataroot"))
    return npz, meta, root


@pytest.mark.parametrize("domain", ["A", "B"])
def test_loader_matches_reference_fixture(reference, domain):
    npz, meta, root = reference
    height, width = meta["load_fine_size_HW"]
    cfg = TransformConfig(load_size=(height, width), crop_size=None, flip=False, ins_max=20)
    source = FolderSource(root, "train", domain)
    assert len(source) == 2
    for item in meta["items"]:
        index = item["index"]
        record = source[index % len(source)]  # --serial_batches pairing
        assert f"train{domain}/{record.id}.png" == item[f"{domain}_path"]
        ref_image = npz[f"item{index}/{domain}"].transpose(1, 2, 0)
        ref_segs = npz[f"item{index}/{domain}_segs"]

        example = transform_record(record, cfg)
        np.testing.assert_allclose(example["img"], ref_image, rtol=0, atol=1e-6)
        # each mask file i sits in the reference's slot i (gaps are -1 there)
        slots = meta["plan"][domain][record.id]
        assert len(record.masks) == len(slots)
        for mask, slot in zip(record.masks, slots):
            ours = to_unit_range(resize(mask, (height, width), "bicubic"))
            np.testing.assert_allclose(ours, ref_segs[slot], rtol=0, atol=1e-6)
        # the batch slots: the reference's 20 slots ordered by area, largest first
        order = np.argsort(-ref_segs.reshape(20, -1).sum(1), kind="stable")
        np.testing.assert_allclose(example["masks"][..., 0], ref_segs[order], rtol=0, atol=1e-6)
        assert example["valid"].sum() == len(slots)


def _write(root, split, name, image, masks):
    save(root / split / name, image)
    stem = name.rsplit(".", 1)[0]
    for index, mask in masks.items():
        save(root / f"{split}_seg" / f"{stem}_{index}.png", mask)


def test_pairing_is_explicit(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "DATA_A_B"  # capital A and B in the path broke the reference
    img = random_image(rng, 12, 10)
    _write(root, "trainA", "x.jpg", img, {0: box_mask(12, 10, 0, 0, 2, 2), 2: box_mask(12, 10, 5, 5, 9, 9)})
    _write(root, "trainA", "x_1.png", img, {0: box_mask(12, 10, 1, 1, 3, 3)})  # its mask: x_1_0.png
    _write(root, "trainA", "no_masks.bmp", img, {})
    _write(root, "trainA", "many.png", img, {i: box_mask(12, 10, 0, 0, 1 + i % 12, 1) for i in range(25)})
    save(root / "trainA" / "sub" / "deep.webp", img)
    save(root / "trainA_seg" / "sub" / "deep_3.png", box_mask(12, 10, 0, 0, 4, 4))

    source = FolderSource(root, "train", "A")
    entries = {name: [p.name for p in masks] for name, _, masks in source.entries}
    assert entries == {
        "many": [f"many_{i}.png" for i in range(25)],
        "no_masks": [],
        "sub/deep": ["deep_3.png"],
        "x": ["x_0.png", "x_2.png"],
        "x_1": ["x_1_0.png"],
    }
    records = {source[i].id: source[i] for i in range(len(source))}
    assert len(records["many"].masks) == 25
    assert records["no_masks"].masks == []
    np.testing.assert_array_equal(records["x"].image.shape, (12, 10, 3))

    example = transform_record(records["no_masks"], TransformConfig(load_size=None, crop_size=None, ins_max=3))
    assert not example["valid"].any() and (example["masks"] == -1).all()


def test_stray_masks_are_logged(tmp_path, caplog):
    rng = np.random.default_rng(0)
    _write(tmp_path, "trainA", "a.png", random_image(rng, 8, 8), {0: box_mask(8, 8, 0, 0, 4, 4)})
    save(tmp_path / "trainA_seg" / "ghost_0.png", box_mask(8, 8, 0, 0, 4, 4))
    with caplog.at_level(logging.WARNING):
        assert len(FolderSource(tmp_path, "train", "A")) == 1
    assert "ghost_0.png" in caplog.text


def test_missing_folders_and_empty_domain(tmp_path):
    with pytest.raises(DataError, match="trainA does not exist"):
        FolderSource(tmp_path, "train", "A")
    save(tmp_path / "trainA" / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="trainA_seg does not exist"):
        FolderSource(tmp_path, "train", "A")
    (tmp_path / "trainB").mkdir()
    (tmp_path / "trainB_seg").mkdir()
    with pytest.raises(DataError, match="no image files in .*trainB"):
        FolderSource(tmp_path, "train", "B")


def test_duplicate_names_are_errors(tmp_path):
    img = np.zeros((4, 4, 3), np.uint8)
    save(tmp_path / "trainA" / "a.png", img)
    save(tmp_path / "trainA" / "a.jpg", img)
    (tmp_path / "trainA_seg").mkdir()
    with pytest.raises(DataError, match="two images named 'a'"):
        FolderSource(tmp_path, "train", "A")
    (tmp_path / "trainA" / "a.jpg").unlink()
    save(tmp_path / "trainA_seg" / "a_0.png", box_mask(4, 4, 0, 0, 2, 2))
    save(tmp_path / "trainA_seg" / "a_00.png", box_mask(4, 4, 0, 0, 2, 2))
    with pytest.raises(DataError, match="two masks for 'a' with index 0"):
        FolderSource(tmp_path, "train", "A")


def test_bad_files_are_named(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path, "trainA", "good.png", random_image(rng, 8, 8), {0: box_mask(8, 8, 0, 0, 4, 4)})
    _write(tmp_path, "trainA", "small_mask.png", random_image(rng, 8, 8), {0: box_mask(6, 8, 0, 0, 4, 4)})
    _write(tmp_path, "trainA", "bad_mask.png", random_image(rng, 8, 8), {})
    (tmp_path / "trainA_seg" / "bad_mask_0.png").write_bytes(b"not a png")
    (tmp_path / "trainA" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    source = FolderSource(tmp_path, "train", "A")
    by_name = {name: i for i, (name, _, _) in enumerate(source.entries)}
    assert source[by_name["good"]].masks[0].shape == (8, 8)
    with pytest.raises(DataError, match=r"cannot read image .*corrupt\.png"):
        source[by_name["corrupt"]]
    with pytest.raises(DataError, match=r"cannot read mask .*bad_mask_0\.png"):
        source[by_name["bad_mask"]]
    with pytest.raises(DataError, match=r"mask .*small_mask_0\.png is 6x8 but its image .*small_mask\.png is 8x8"):
        source[by_name["small_mask"]]


def test_crop_too_large_names_the_file_and_sizes(tmp_path):
    _write(tmp_path, "trainA", "small.png", np.zeros((8, 6, 3), np.uint8), {0: box_mask(8, 6, 0, 0, 4, 4)})
    record = FolderSource(tmp_path, "train", "A")[0]
    message = r"record small \(.*trainA/small\.png\): crop 10x10 is larger than the image 8x6 \(set load_size"
    with pytest.raises(DataError, match=message):
        transform_record(record, TransformConfig(load_size=None, crop_size=(10, 10)))


def test_colour_and_binary_masks(tmp_path):
    from PIL import Image

    box = box_mask(8, 8, 2, 2, 6, 6)
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = box
    soft_grey = np.repeat((box // 2)[..., None], 3, axis=2)  # 127 saved as RGB
    palette = Image.fromarray((box > 0).astype(np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 0, 200, 0])
    masks = {0: red, 1: soft_grey, 2: box // 255, 3: box}  # RGB red, RGB grey, 0/1, 0/255
    _write(tmp_path, "trainA", "a.png", np.zeros((8, 8, 3), np.uint8), masks)
    palette.save(tmp_path / "trainA_seg" / "a_4.png")
    record = FolderSource(tmp_path, "train", "A")[0]
    expected = [box, box // 2, box, box, (box > 0) * np.uint8(200)]
    for index, (mask, want) in enumerate(zip(record.masks, expected, strict=True)):
        np.testing.assert_array_equal(mask, want, err_msg=f"mask {index}")


@pytest.mark.parametrize("task, sizes", [("shp2gir_coco", (7, 7)), ("pants2skirt_mhp", (5, 5))])
def test_reference_sample_folders(task, sizes):
    from data_helpers import SHARED_DATA

    from instagan_jax.data import PairLoader

    root = require(SHARED_DATA / "instagan_samples" / task)
    sources = [FolderSource(root, "sample", d) for d in "AB"]
    assert tuple(len(s) for s in sources) == sizes
    assert all(masks for s in sources for _, _, masks in s.entries)  # every sample image has masks
    cfg = TransformConfig(load_size=(72, 48), crop_size=(64, 40), ins_max=4)
    with PairLoader(*sources, batch_size=2, transform=cfg, seed=0) as loader:
        batch = next(loader)
    assert batch["masks_A"].shape == (2, 4, 64, 40, 1) and batch["valid_A"][:, 0].all()
