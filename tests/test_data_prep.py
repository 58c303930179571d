"""`instagan prepare`: CCP, MHP, COCO and shapes into the folder layout or TFDS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from data_helpers import SHARED_DATA, require, save, write_fake_mhp, write_tiny_coco
from PIL import Image

from data_prep.cli import main as cli_main
from instagan_jax.data import FolderSource, TransformConfig, transform_record

ROOT = Path(__file__).resolve().parents[1]


def _prepare(dataset: str, args: list[str]) -> int:
    return cli_main(["prepare", dataset, *args])


def _count(folder: Path) -> int:
    return len(list(folder.iterdir()))


def test_ccp_on_shared_data(tmp_path):
    raw = require(SHARED_DATA / "ccp_jeans_skirt")
    assert _prepare("ccp", ["--root", str(raw), "--out", str(tmp_path)]) == 0
    counts = {split: _count(tmp_path / split) for split in ("trainA", "trainB", "valA", "valB")}
    assert counts["trainA"] == 155 and counts["trainB"] == 167
    assert counts["valA"] + counts["valB"] >= 40 and _count(tmp_path / "valA_seg") == 0
    source = FolderSource(tmp_path, "train", "A")
    assert all(len(masks) == 1 for _, _, masks in source.entries)
    record = source[0]
    photo = np.asarray(Image.open(raw / "photos" / f"{record.id}.jpg").convert("RGB"))
    np.testing.assert_array_equal(record.image, photo)  # original photo, original size
    from data_prep.ccp import load_mat

    labels = load_mat(raw / "annotations" / "pixel-level" / f"{record.id}.mat", "groundtruth")
    np.testing.assert_array_equal(record.masks[0] > 0, labels == 25)  # jeans
    assert len(FolderSource(tmp_path, "val", "B")[0].masks) == 0


def test_ccp_bad_input(tmp_path):
    raw = tmp_path / "raw"
    (raw / "annotations" / "pixel-level").mkdir(parents=True)
    (raw / "annotations" / "image-level").mkdir(parents=True)
    (raw / "photos").mkdir()
    from scipy.io import savemat

    names = np.empty((1, 3), dtype=object)
    names[0, :] = ["null", "jeans", "skirt"]
    savemat(raw / "label_list.mat", {"label_list": names})
    for record_id, label in (("0001", 1), ("0003", 2)):  # jeans, skirt
        savemat(raw / "annotations" / "pixel-level" / f"{record_id}.mat",
                {"groundtruth": np.full((6, 4), label, np.uint8)})
        save(raw / "photos" / f"{record_id}.jpg", np.zeros((6, 4, 3), np.uint8))
    savemat(raw / "annotations" / "image-level" / "0004.mat", {"tags": np.array([[1, 2]])})
    save(raw / "photos" / "0004.jpg", np.zeros((6, 4, 3), np.uint8))
    (raw / "annotations" / "pixel-level" / "0002.mat").write_bytes(b"not a mat file")
    assert cli_main(["prepare", "ccp", "--root", str(raw), "--out", str(tmp_path / "a")]) == 2
    assert cli_main(["prepare", "ccp", "--root", str(raw), "--out", str(tmp_path / "b"), "--skip-bad"]) == 0
    assert _count(tmp_path / "b" / "trainA") == 1
    assert cli_main(["prepare", "ccp", "--root", str(raw), "--out", str(tmp_path / "c"), "--cat-b", "hat"]) == 2


def test_ccp_errors_name_the_file(tmp_path):
    from data_prep.ccp import ccp_label, load_mat
    from instagan_jax.data import DataError

    (tmp_path / "x.mat").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"cannot read MATLAB file .*x\.mat"):
        load_mat(tmp_path / "x.mat", "groundtruth")
    with pytest.raises(DataError, match="CCP category 'hat' not in label_list.mat; known: jeans, skirt"):
        ccp_label(["", "jeans", "skirt"], "hat")


def test_mhp_on_a_fake_layout(tmp_path, capsys):
    raw = tmp_path / "raw"
    write_fake_mhp(raw)
    out = tmp_path / "out"
    assert _prepare("mhp", ["--root", str(raw), "--out", str(out), "--size", "60", "30"]) == 0
    report = capsys.readouterr().out
    assert "trainA: 1 images; dropped 1 images (landscape: 1)\n" in report
    assert "testA: 1 images; dropped 1 images (no mask left: 1), 1 masks (outside the crop: 1)\n" in report
    a, b = FolderSource(out, "train", "A"), FolderSource(out, "train", "B")
    assert [name for name, _, _ in a.entries] == ["0001"]  # 0003 is landscape
    assert [len(masks) for _, _, masks in a.entries] == [2]  # one mask per person
    assert [name for name, _, _ in b.entries] == ["0001", "0002"]
    assert a[0].image.shape == (60, 30, 3) and a[0].masks[0].shape == (60, 30)
    assert [name for name, _, _ in FolderSource(out, "test", "A").entries] == ["0005"]  # 0004's mask is cropped away
    wide = tmp_path / "wide"
    assert _prepare("mhp", ["--root", str(raw), "--out", str(wide), "--size", "60", "30", "--no-skip-horizontal"]) == 0
    assert [name for name, _, _ in FolderSource(wide, "train", "A").entries] == ["0001", "0003"]
    assert _prepare("mhp", ["--root", str(raw), "--out", str(wide), "--cat-a", "jeans"]) == 2


def test_coco_script_on_shared_samples_as_folder(tmp_path):
    folder = require(SHARED_DATA / "icevision_coco_samples")
    args = ["--root", str(folder), "--split", "train:annotations.json:images", "--format", "folder",
            "--cat-a", "person"]
    assert _prepare("coco", [*args, "--cat-b", "bottle", "--out", str(tmp_path)]) == 0
    people = FolderSource(tmp_path, "train", "A")
    assert len(people) == 2 and people[0].image.shape == (256, 256, 3)
    assert all(m.any() for i in range(len(people)) for m in people[i].masks)
    assert _prepare("coco", [*args, "--cat-b", "unicorn", "--out", str(tmp_path / "x")]) == 2


def test_prepare_coco_tfds_and_shapes_cli(tmp_path):
    raw = tmp_path / "coco"
    write_tiny_coco(raw)
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.cli", "prepare", "coco", "--root", str(raw),
         "--split", "train:annotations.json:images", "--cat-a", "cat", "--cat-b", "dog",
         "--image-size", "16", "--out", str(tmp_path / "tfds")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "trainA: 2 images" in result.stdout and "trainB: 2 images" in result.stdout
    from instagan_jax.data import open_sources

    a, b = open_sources("tfds", name="instagan_coco/cat_dog", data_dir=tmp_path / "tfds")
    assert len(a) == 2 and a[0].image.shape == (16, 16, 3)

    assert cli_main(["prepare", "shapes", "--num", "3", "--size", "24", "20", "--out", str(tmp_path / "sh"),
                     "--format", "tfds"]) == 0
    a, b = open_sources("tfds", name="instagan_folder/shapes", data_dir=tmp_path / "sh")
    assert (len(a), len(b)) == (3, 3) and not (tmp_path / "sh" / ".staging_shapes").exists()
    from instagan_jax.data import ShapesSource

    expected = ShapesSource("B", 3, height=24, width=20)
    got = {b[i].id: b[i] for i in range(3)}
    for i in range(3):
        np.testing.assert_array_equal(got[expected[i].id].image, expected[i].image)  # lossless
        cfg = TransformConfig(load_size=None, crop_size=None, ins_max=6)
        np.testing.assert_array_equal(transform_record(got[expected[i].id], cfg)["masks"],
                                      transform_record(expected[i], cfg)["masks"])
