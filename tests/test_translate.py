"""`instagan translate`: the three input kinds, any number of instances, memory, errors, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, require_shared
from PIL import Image
from pycocotools import mask as mask_utils

from instagan_jax.cli import main
from instagan_jax.data.inputs import detection_entries, folder_entries, layout_entries
from instagan_jax.methods.instagan import inference
from instagan_jax.trained import load_trained
from instagan_jax.translate import check_entries, translate_entries

SIZE = (32, 32)  # the tiny run's crop size


@pytest.fixture(scope="module")
def model(tiny_run):
    return load_trained(workdir=tiny_run)


def _boxes(height, width, count):
    """`count` 0/255 box masks of distinct areas."""
    masks = np.zeros((count, height, width), np.uint8)
    for i in range(count):
        top, left = (3 * i) % (height - 4), (5 * i) % (width - 4)
        masks[i, top:top + 2 + i % 5, left:left + 3 + i % 7] = 255
    return masks


def _write_image(path: Path, height: int, width: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _write_masks(folder: Path, name: str, masks) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, mask in enumerate(masks):
        Image.fromarray(mask).save(folder / f"{name}_{i}.png")


def _layout(root: Path, split: str = "testA") -> Path:
    """root/split: 'wide' (40x56, 3 instances), 'small' (24x20, 1), 'empty' (32x32, none)."""
    for name, (height, width, count) in {"wide": (40, 56, 3), "small": (24, 20, 1), "empty": (32, 32, 0)}.items():
        _write_image(root / split / f"{name}.jpg", height, width)
        _write_masks(root / f"{split}_seg", name, _boxes(height, width, count))
    (root / f"{split}_seg").mkdir(parents=True, exist_ok=True)
    return root / split


def _run(model, entries, out, ins_per=1):
    return translate_entries(model.translator("AtoB", ins_per=ins_per), entries, out, size=SIZE, progress=False)


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_cli_end_to_end_on_a_data_root(tiny_run, tmp_path, capsys):
    _layout(tmp_path / "data", "testB")
    out = tmp_path / "out"
    assert main(["translate", str(tmp_path / "data"), "--workdir", str(tiny_run), "--direction", "BtoA",
                 "--out", str(out), "--ins-per", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "network size 32x32, 2 instance(s) per group" in printed
    assert re.search(r"translated 3 image\(s\) with 4 instance\(s\) in [\d.]+ s; 1 without instances, "
                     r"translated alone; gallery: .*index.html", printed)
    assert _png(out / "images" / "wide.png").shape == (40, 56, 3)
    masks = [_png(out / "images_seg" / f"wide_{i}.png") for i in range(3)]
    assert all(m.shape == (40, 56) and set(np.unique(m)) <= {0, 255} for m in masks)
    np.testing.assert_array_equal(_png(out / "merged" / "wide.png"), np.max(masks, axis=0))
    assert _png(out / "side_by_side" / "wide.png").shape == (40, 4 * 56 + 3 * 2, 3)
    assert not (out / "images_seg" / "empty_0.png").exists() and (out / "images" / "empty.png").exists()
    page = (out / "index.html").read_text()
    assert "<th>input | input masks | output | output masks</th>" in page
    assert 'src="side_by_side/wide.png"' in page and 'href="images_seg/wide_2.png"' in page
    assert "0 (image translated alone)" in page and str(tmp_path) not in page.split("<body>")[1]
    assert not list(out.rglob("*.tmp"))


def test_masks_folder_and_named_checkpoint(tiny_run, model, tmp_path, capsys):
    _write_image(tmp_path / "photos" / "a.png", 32, 32)
    _write_masks(tmp_path / "instances", "a", _boxes(32, 32, 4))  # 4 groups of 1: the memory test's compilation
    entries = folder_entries(tmp_path / "photos", tmp_path / "instances")
    assert [len(e.masks) for e in entries] == [4] and check_entries(entries) == 4
    assert main(["translate", str(tmp_path / "photos"), "--masks", str(tmp_path / "instances"), "--checkpoint",
                 str(tiny_run / "checkpoints" / "2"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "(step 2, InstaGAN)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out" / "images_seg").iterdir()) == [f"a_{i}.png" for i in range(4)]


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask > 0))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def test_coco_results(model, tmp_path):
    _write_image(tmp_path / "images" / "000000000139.jpg", 32, 40)
    _write_image(tmp_path / "images" / "7.png", 32, 32)
    boxes = _boxes(32, 40, 3)
    results = [{"image_id": 139, "category_id": 20, "segmentation": _rle(boxes[0]), "score": 0.9},
               {"image_id": 139, "category_id": 20, "segmentation": _rle(boxes[1]), "score": 0.3},
               {"image_id": 139, "category_id": 1, "segmentation": _rle(boxes[2]), "score": 0.99}]
    (tmp_path / "results.json").write_text(json.dumps(results))
    entries = detection_entries(tmp_path / "images", tmp_path / "results.json", "20")
    assert {e.name: len(e.masks) for e in entries} == {"000000000139": 1, "7": 0}
    assert len(detection_entries(tmp_path / "images", tmp_path / "results.json", "20", min_score=0.2)[0].masks) == 2
    info = {"images": [{"id": 139, "file_name": "000000000139.jpg"}, {"id": 8, "file_name": "7.png"}],
            "categories": [{"id": 20, "name": "sheep"}, {"id": 1, "name": "person"}]}
    (tmp_path / "info.json").write_text(json.dumps(info))
    named = detection_entries(tmp_path / "images", tmp_path / "results.json", "sheep",
                              image_info=tmp_path / "info.json")
    assert [len(e.masks) for e in named] == [1, 0]
    summary = _run(model, named, tmp_path / "out")
    assert (summary.images, summary.instances, summary.without_instances) == (2, 1, 1)
    assert _png(tmp_path / "out" / "images_seg" / "000000000139_0.png").shape == (32, 40)


def test_shared_sample_folder(model, tmp_path):
    folder = require_shared(SHARED / "data" / "instagan_samples" / "shp2gir_coco" / "sampleA")
    entries = layout_entries(folder, "AtoB")
    summary = _run(model, entries[:2], tmp_path / "out", ins_per=2)
    assert summary.images == 2 and summary.instances == sum(len(e.masks) for e in entries[:2]) > 0
    assert _png(tmp_path / "out" / "images" / f"{entries[0].name}.png").shape == (256, 256, 3)


def _sorted_masks(count: int) -> np.ndarray:
    """(1, count, 32, 32, 1) masks in [-1, 1], largest first."""
    boxes = _boxes(*SIZE, count)
    order = np.argsort(-boxes.sum(axis=(1, 2)), kind="stable")
    return (boxes[order][None, ..., None] / 127.5 - 1.0).astype(np.float32)


def test_24_instances_translate_in_the_memory_of_4(model):
    forward = model.generators("AtoB")[0]
    img = np.zeros((1, *SIZE, 3), np.float32)
    temp = {}
    for count in (4, 24):
        args = inference.forward_inputs(forward, img, _sorted_masks(count), 1)
        compiled = inference.forward_groups.lower(*args).compile()
        temp[count] = compiled.memory_analysis().temp_size_in_bytes
    print(f"temp bytes: 4 instances {temp[4]}, 24 instances {temp[24]}")
    assert abs(temp[24] - temp[4]) <= 0.1 * temp[4]
    fake_img, fake_masks = inference.translate_forward(forward, img, _sorted_masks(24), ins_per=1)
    assert fake_masks.shape == (1, 24, *SIZE, 1) and np.all(np.isfinite(fake_img))
    assert np.all(np.asarray(fake_masks).max(axis=(2, 3, 4)) > -1.0)  # every instance was translated


def test_forward_scan_matches_the_sequential_translate(model):
    """The forward-only scan gives `translate`'s image; with no instance it translates the image alone."""
    forward, backward = model.generators("AtoB")
    img = np.tanh(np.random.default_rng(0).normal(size=(1, *SIZE, 3))).astype(np.float32)
    masks = _sorted_masks(3)
    fake_img, fake_masks = inference.translate_forward(forward, img, masks, ins_per=2)
    full = inference.translate(forward, backward, img, masks, ins_per=2)
    np.testing.assert_allclose(fake_img, full.fake_img, atol=1e-5)
    np.testing.assert_allclose(fake_masks, full.fake_masks[:, :3], atol=1e-5)
    alone, none = inference.translate_forward(forward, img, masks[:, :0], ins_per=2)
    assert none.shape == (1, 0, *SIZE, 1) and not np.allclose(alone, img)
    assert [inference.bucket_groups(n, 2) for n in (0, 1, 3, 5, 9, 16)] == [1, 1, 2, 4, 8, 8]


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_errors_name_the_file_before_the_model_loads(tiny_run, tmp_path, capsys):
    run = ["--workdir", str(tiny_run), "--out", str(tmp_path / "out")]  # only its config is read: inputs fail first
    folder = _layout(tmp_path / "data")
    (folder / "small.jpg").write_bytes(b"not an image")
    message = _error(capsys, ["translate", str(tmp_path / "data"), *run])
    assert "instagan translate: error: cannot read image" in message and "small.jpg" in message
    _write_image(folder / "small.jpg", 24, 20)
    (tmp_path / "data" / "testA_seg" / "wide_0.png").write_bytes(b"broken")
    assert re.search(r"cannot read mask .*testA_seg/wide_0.png", _error(capsys, ["translate", str(folder), *run]))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "data" / "testA_seg" / "wide_0.png")
    assert re.search(r"mask .*testA_seg/wide_0.png is 10x10 but its image .*wide.jpg is 40x56",
                     _error(capsys, ["translate", str(folder), *run]))
    (tmp_path / "data" / "testA_seg" / "wide_0.png").unlink()
    no_run = ["--workdir", str(tmp_path / "no_run"), "--out", str(tmp_path / "out")]
    assert "no checkpoints folder" in _error(capsys, ["translate", str(folder), *no_run])  # the run comes first
    assert "does not exist" in _error(capsys, ["translate", str(folder), "--masks", str(tmp_path / "nomasks"), *run])
    missing = _error(capsys, ["translate", str(tmp_path / "nowhere"), *run])
    assert "nowhere does not exist" in missing


def test_detection_errors(tiny_run, tmp_path, capsys):
    _write_image(tmp_path / "images" / "5.png", 16, 16)
    results = [{"image_id": 5, "category_id": 3, "segmentation": _rle(_boxes(16, 20, 1)[0]), "score": 1.0}]
    (tmp_path / "r.json").write_text(json.dumps(results))
    base = ["translate", str(tmp_path / "images"), "--detections", str(tmp_path / "r.json"),
            "--workdir", str(tiny_run), "--out", str(tmp_path / "out")]
    assert "occurs in no detection of" in _error(capsys, base + ["--category", "4"])
    assert "is a name" in _error(capsys, base + ["--category", "sheep"])
    assert "needs --category" in _error(capsys, base)
    assert re.search(r"mask detection 0 of .*r.json is 16x20 but its image .*5.png is 16x16",
                     _error(capsys, base + ["--category", "3"]))
    (tmp_path / "info.json").write_text(json.dumps({"images": [{"id": 5, "file_name": "5.png"}],
                                                    "categories": [{"id": 3, "name": "car"}]}))
    info = ["--image-info", str(tmp_path / "info.json")]
    assert "'sheep' not found" in _error(capsys, base + ["--category", "sheep", *info])
    results[0]["image_id"] = 6
    (tmp_path / "r.json").write_text(json.dumps(results))
    assert "detections of image id 6" in _error(capsys, base + ["--category", "3"])
    _write_image(tmp_path / "images" / "cat.png", 16, 16)
    assert "cannot tell the COCO image id" in _error(capsys, base + ["--category", "3"])
    (tmp_path / "r.json").write_text("{}")
    assert "is not a COCO results file" in _error(capsys, base + ["--category", "3"])


def test_an_out_folder_of_another_translation_is_refused_before_the_model_loads(tiny_run, tmp_path, capsys):
    """Issue 26, case 1: a second translation into the same --out never mixes with the first."""
    _write_image(tmp_path / "photos" / "mine.png", 32, 32)
    _write_masks(tmp_path / "masks", "mine", _boxes(32, 32, 2))
    out = tmp_path / "out"
    run = ["translate", str(tmp_path / "photos"), "--masks", str(tmp_path / "masks"), "--workdir", str(tiny_run),
           "--no-progress"]
    assert main([*run, "--out", str(out)]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _write_masks(tmp_path / "masks", "mine", _boxes(32, 32, 1))
    (tmp_path / "masks" / "mine_1.png").unlink()
    message = _error(capsys, [*run, "--out", str(out)])
    assert re.search(r"--out .*out already holds \d+ entries \(.*index.html.*\): translations are never mixed", message)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # untouched
    (tmp_path / "a_file").write_text("x")
    for bad, expected in ((tmp_path / "a_file", "is a file, not a folder"),
                          (tmp_path / "a_file" / "below", "a_file is a file, not a folder")):
        assert main([*run, "--out", str(bad)]) == 2
        printed = capsys.readouterr()
        assert expected in printed.err and "model:" not in printed.out  # refused before the model loaded


def test_an_all_zero_mask_is_translated_with_a_warning_naming_it(tiny_run, tmp_path, capsys, caplog):
    _write_image(tmp_path / "photos" / "mine.png", 32, 32)
    masks = _boxes(32, 32, 2)
    masks[1] = 0
    _write_masks(tmp_path / "masks", "mine", masks)
    assert main(["translate", str(tmp_path / "photos"), "--masks", str(tmp_path / "masks"), "--workdir",
                 str(tiny_run), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "mine_1.png" in warned[0] and "empty (all zero)" in warned[0], warned
