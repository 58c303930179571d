"""`instagan prepare`: registered COCO configs build, empty splits, reruns into an existing output,
the report of what was dropped and skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_helpers import write_coco, write_tiny_coco
from pycocotools import mask as mask_utils

from data_prep.cli import main as cli_main
from data_prep.instagan_coco import REGISTERED_PAIRS
from data_prep.manifest import MANIFEST
from instagan_jax.data import FolderSource, open_sources

TRAIN_SPLIT = ["--split", "train:annotations.json:images"]


def _prepare_coco(raw: Path, out: Path, *options: str) -> int:
    return cli_main(["prepare", "coco", "--root", str(raw), *TRAIN_SPLIT, "--out", str(out), *options])


@pytest.mark.parametrize(("cat_a", "cat_b"), REGISTERED_PAIRS)
def test_every_registered_config_builds_from_the_command_line(tmp_path, cat_a, cat_b):
    write_tiny_coco(tmp_path / "raw", names=(cat_a, cat_b))
    assert _prepare_coco(tmp_path / "raw", tmp_path / "tfds", "--cat-a", cat_a, "--cat-b", cat_b,
                         "--image-size", "16") == 0
    a, b = open_sources("tfds", name=f"instagan_coco/{cat_a}_{cat_b}", data_dir=tmp_path / "tfds")
    assert (len(a), len(b)) == (2, 2) and a[0].image.shape == (16, 16, 3)


def test_a_registered_name_cannot_hold_other_categories(tmp_path, capsys):
    write_tiny_coco(tmp_path / "raw")
    assert _prepare_coco(tmp_path / "raw", tmp_path / "tfds", "--cat-a", "cat", "--cat-b", "dog",
                         "--name", "sheep_giraffe") == 2
    assert ("config name 'sheep_giraffe' is registered for sheep (A) and giraffe (B), not cat and dog"
            in capsys.readouterr().err)


def _write_coco_cropped_away(raw: Path) -> None:
    """A 20x60 image: a cat only at the left edge plus an empty cat annotation; a dog in the middle."""
    empty = mask_utils.encode(np.zeros((20, 60), dtype=np.uint8, order="F"))
    empty["counts"] = empty["counts"].decode()
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[1, 5, 5, 5, 5, 15, 1, 15]]},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": empty},
        {"id": 3, "image_id": 1, "category_id": 2, "segmentation": [[25, 5, 35, 5, 35, 15, 25, 15]]},
    ]
    write_coco(raw, {1: (20, 60)}, anns, ("cat", "dog"))


@pytest.mark.parametrize("fmt", ["tfds", "folder"])
def test_a_split_left_empty_is_one_clear_error(tmp_path, capsys, fmt):
    _write_coco_cropped_away(tmp_path / "raw")
    out = tmp_path / "out"
    assert _prepare_coco(tmp_path / "raw", out, "--cat-a", "cat", "--cat-b", "dog", "--image-size", "20",
                         "--format", fmt) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "instagan prepare: error: split trainA is empty (dropped: 1 images (no mask left: 1), "
        "2 masks (empty annotation: 1, outside the crop: 1)); nothing was written")
    written = [p for p in out.rglob("*") if p.is_file() and ".config" not in p.parts]  # TFDS's builder metadata
    assert not written  # no part of the output (TFDS leaves empty folders)


def test_report_of_dropped_masks_per_split(tmp_path, capsys):
    write_tiny_coco(tmp_path / "raw")
    assert _prepare_coco(tmp_path / "raw", tmp_path / "out", "--cat-a", "cat", "--cat-b", "dog",
                         "--image-size", "16", "--no-crowd", "--format", "folder") == 0
    report = capsys.readouterr().out
    assert "  trainA: 2 images; dropped 1 masks (crowd: 1)\n  trainB: 2 images\n" in report


def test_tfds_skip_bad_prints_the_skip_count(tmp_path, capsys):
    write_tiny_coco(tmp_path / "raw")
    (tmp_path / "raw" / "images" / "000000000002.jpg").write_bytes(b"not a jpeg")
    assert _prepare_coco(tmp_path / "raw", tmp_path / "tfds", "--cat-a", "cat", "--cat-b", "dog",
                         "--image-size", "16", "--skip-bad") == 0
    report = capsys.readouterr().out
    assert "  trainA: 1 images\n" in report and "  skipped 1 bad record(s), see the warnings above" in report


def test_tfds_rerun_reuses_same_options_and_refuses_others(tmp_path, capsys):
    write_tiny_coco(tmp_path / "raw")
    args = ("--cat-a", "cat", "--cat-b", "dog", "--image-size", "16")
    assert _prepare_coco(tmp_path / "raw", tmp_path / "tfds", *args) == 0
    assert _prepare_coco(tmp_path / "raw", tmp_path / "tfds", *args) == 0
    assert "was prepared with the same options before: kept as it is" in capsys.readouterr().out
    assert _prepare_coco(tmp_path / "raw", tmp_path / "tfds", *args, "--image-size", "20", "--no-crowd") == 2
    assert "was prepared with other options (image_size: 16 there, 20 now; no_crowd: False there, True now)" \
        in capsys.readouterr().err
    a, _ = open_sources("tfds", name="instagan_coco/cat_dog", data_dir=tmp_path / "tfds")
    assert [a[i].image.shape for i in range(len(a))] == [(16, 16, 3)] * 2  # the first build, untouched


def test_folder_rerun_never_merges(tmp_path, capsys):
    write_tiny_coco(tmp_path / "raw")
    out = tmp_path / "out"
    args = ("--image-size", "16", "--format", "folder")
    assert _prepare_coco(tmp_path / "raw", out, "--cat-a", "cat", "--cat-b", "dog", *args) == 0
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert _prepare_coco(tmp_path / "raw", out, "--cat-a", "dog", "--cat-b", "cat", *args) == 2
    assert "cat_a: 'cat' there, 'dog' now; cat_b: 'dog' there, 'cat' now" in capsys.readouterr().err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert [name for name, _, _ in FolderSource(out, "train", "A").entries] == ["000000000001", "000000000002"]
    assert json.loads((out / MANIFEST).read_text())["counts"] == {"trainA": 2, "trainB": 2}

    (out / MANIFEST).unlink()  # e.g. a folder written by hand or by an older version
    assert _prepare_coco(tmp_path / "raw", out, "--cat-a", "cat", "--cat-b", "dog", *args) == 2
    assert f"{out} already holds data, but no {MANIFEST} saying how it was made" in capsys.readouterr().err


def test_the_registered_folder_config_builds_from_the_command_line(tmp_path):
    assert cli_main(["prepare", "shapes", "--num", "2", "--size", "24", "20", "--format", "tfds",
                     "--name", "default", "--out", str(tmp_path)]) == 0
    a, b = open_sources("tfds", name="instagan_folder/default", data_dir=tmp_path)
    assert (len(a), len(b)) == (2, 2) and a[0].image.shape == (24, 20, 3)


def test_shapes_drawn_as_a_config_draws_them(tmp_path, capsys):
    assert cli_main(["prepare", "shapes", "--config", "discs2squares", "--num", "3", "--seed", "5", "--phase", "test",
                     "--out", str(tmp_path / "d2s")]) == 0
    a, b = FolderSource(tmp_path / "d2s", "test", "A"), FolderSource(tmp_path / "d2s", "test", "B")
    assert len(a) == len(b) == 3 and a[0].image.shape == (32, 32, 3)
    wanted = open_sources("shapes", size=3, seed=5, height=32, width=32, max_instances=1, object_size=[0.2, 0.35],
                          background="plain", background_rgb=[140, 140, 140], rotate=False, elongated=0.0)
    for got, want in zip((a, b), wanted):
        records = {r.id: r for r in (got[i] for i in range(3))}
        for i in range(3):
            mine = records[want[i].id]
            np.testing.assert_array_equal(mine.image, want[i].image)
            assert len(mine.masks) == 1
    assert cli_main(["prepare", "shapes", "--config", "lomit_learnable", "--out", str(tmp_path / "x")]) == 2
    assert "its data.kind is 'attribute_shapes', not 'shapes'" in capsys.readouterr().err


def test_write_splits_never_writes_into_existing_split_folders(tmp_path):
    from data_prep import write_splits
    from instagan_jax.data import DataError

    (tmp_path / "trainB_seg").mkdir()
    with pytest.raises(DataError, match=r"trainB_seg already exists: write a new data set into a new or empty folder"):
        write_splits({"trainA": [], "trainB": []}, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainB_seg"]
