"""`instagan eval`: metrics on hand-made arrays with known answers, held-out data, the command end to end."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from instagan_jax import cli, evaluate
from instagan_jax.config import DataConfig
from instagan_jax.eval import metrics, splits
from instagan_jax.fid import random_conv_weights


def _box(height, width, top, left, h, w):
    mask = -np.ones((height, width, 1), np.float32)
    mask[top:top + h, left:left + w] = 1.0
    return mask


def test_identical_background_gives_l1_zero_and_infinite_psnr():
    img = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3))
    union = _box(8, 8, 2, 2, 3, 3)[None].repeat(2, axis=0)
    fake = img.copy()
    fake[:, 2:5, 2:5] = 0.5  # changed inside the mask only
    diff = metrics.background_difference(img, fake, union, -np.ones_like(union))
    assert diff.shape == (2 * (64 - 9), 3) and np.all(diff == 0)
    assert metrics.psnr(0.0) == math.inf
    assert metrics.json_ready({"psnr": math.inf, "x": math.nan, "n": np.int64(3)}) == {"psnr": "inf", "x": None, "n": 3}


def test_background_error_in_0_255_units_and_psnr():
    img = np.zeros((1, 4, 4, 3))
    fake = img + 2.0 / 255.0  # 1 grey level = 2/255 in [-1, 1]: 2 grey levels everywhere
    empty = -np.ones((1, 4, 4, 1))
    diff = metrics.background_difference(img, fake, empty, empty)
    np.testing.assert_allclose(np.abs(diff).mean(), 1.0)
    assert metrics.psnr(1.0) == pytest.approx(20 * math.log10(255))
    translated = _box(4, 4, 0, 0, 4, 2)[None]  # the translated mask covers the left half
    assert metrics.background_difference(img, fake, empty, translated).shape == (8, 3)


def test_mask_iou_area_ratio_and_shape_scores():
    real = np.stack([_box(20, 20, 2, 2, 8, 8), _box(20, 20, 0, 0, 4, 4), -np.ones((20, 20, 1))])[None]
    fake = np.stack([_box(20, 20, 2, 2, 8, 4), -np.ones((20, 20, 1)), _box(20, 20, 0, 0, 2, 2)])[None]
    valid = np.array([[True, True, False]])
    r, f = metrics.mask_pairs(real, fake, valid)
    assert r.shape == (2, 20, 20)
    np.testing.assert_allclose(metrics.iou(r, f), [0.5, 0.0])
    np.testing.assert_allclose(metrics.area_ratio(r, f), [0.5, 0.0])
    np.testing.assert_allclose(metrics.shape_scores(r), [1.0, 1.0])
    assert metrics.shape_scores(f).shape == (1,)  # the empty translated mask is left out
    yy, xx = np.mgrid[:41, :41]
    disc = (yy - 20) ** 2 + (xx - 20) ** 2 <= 15 ** 2
    assert metrics.shape_scores(disc[None])[0] == pytest.approx(math.pi / 4, abs=0.03)


def test_distribution_and_target_fraction():
    summary = metrics.distribution(np.array([1.0, 2.0, 3.0, 4.0, 5.0, np.nan]))
    assert summary == {"mean": 3.0, "q25": 2.0, "median": 3.0, "q75": 4.0, "count": 5}
    assert metrics.distribution(np.array([]))["mean"] is None
    scores = np.array([0.78, 0.8, 0.95, 1.0, 0.4])
    assert metrics.shape_summary(scores, "B") == {
        "rectangularity": metrics.distribution(scores), "target_fraction": 0.4, "irregular_fraction": 0.2}
    assert metrics.shape_summary(scores, "A")["target_fraction"] == pytest.approx(0.4)  # 0.4 is no disc
    assert metrics.shape_summary(np.array([]), "A")["target_fraction"] is None
    assert metrics.IRREGULAR_BELOW < np.pi / 4 < metrics.SHAPE_THRESHOLD < 1.0


def test_objects_segmented_from_real_shapes_images_match_their_masks():
    """The image-only shape measure's segmenter recovers the true masks of real shapes images (disc and
    square domains), and its rectangularity separates the shapes as the true masks do."""
    from instagan_jax.data.shapes import shapes_record

    for domain, angular in (("A", False), ("B", True)):
        images, masks, valid = [], [], []
        for index in range(12):
            image, instance_masks = shapes_record(domain, index, seed=7, height=72, width=72, max_instances=2,
                                                  object_size=(0.1, 0.25))
            slots = -np.ones((2, 72, 72, 1), np.float32)
            for k, mask in enumerate(instance_masks):
                slots[k, mask] = 1.0
            images.append(image / 127.5 - 1.0)
            masks.append(slots)
            valid.append([k < len(instance_masks) for k in range(2)])
        masks, valid = np.stack(masks), np.array(valid)
        seen = metrics.segment_objects(np.stack(images), masks, valid)
        truth = metrics.binarize(masks)[valid][..., 0]
        assert seen.shape == truth.shape
        assert np.median(metrics.iou(truth, seen)) > 0.97, domain
        scores = metrics.shape_scores(seen)
        assert np.mean(scores >= metrics.SHAPE_THRESHOLD) > 0.6 if angular else np.mean(scores < metrics.SHAPE_THRESHOLD) > 0.9


def test_a_disc_drawn_as_its_square_keeps_the_background_outside_the_objects():
    """Outside the input masks, the square's corners count as changed background; outside the input and the
    objects segmented from the output, nothing changed."""
    yy, xx = np.mgrid[:32, :32]
    disc = (yy - 15.5) ** 2 + (xx - 15.5) ** 2 <= 8**2
    square = (np.abs(yy - 15.5) <= 8) & (np.abs(xx - 15.5) <= 8)
    grey, red = np.array([0.1, 0.1, 0.1]), np.array([0.9, -0.8, -0.8])
    real, fake = (np.where(shape[..., None], red, grey)[None].astype(np.float32) for shape in (disc, square))
    masks = np.where(disc, 1.0, -1.0)[None, None, ..., None].astype(np.float32)
    tally = metrics.Tally()
    tally.add(real, masks, np.ones((1, 1), bool), fake, shapes=True)
    result = tally.summary("B", shapes=True, masks=False)
    assert result["background_outside_input"]["psnr_db"] < 20
    assert result["background_outside_objects"]["psnr_db"] == math.inf
    assert result["image_shape"]["translated"]["target_fraction"] == 1.0


def test_batches_have_one_shape():
    assert metrics.batches(5, 2) == [[0, 1], [2, 3], [4, 4]]
    assert metrics.batches(2, 4) == [[0, 1, 1, 1]]


def test_held_out_data(tmp_path):
    shapes, split = splits.held_out_data(DataConfig(options={"size": 10, "seed": 3}), set())
    assert shapes.options == {"size": 10, "seed": 3 + splits.HELD_OUT_SEED_OFFSET} and "held out" in split
    same, split = splits.held_out_data(DataConfig(options={"seed": 3}), {"seed"})
    assert same.options == {"seed": 3} and "--data" in split
    folder = DataConfig(kind="folder", options={"root": str(tmp_path)})
    assert "training split trainA" in splits.held_out_data(folder, set())[1]
    for name in ("testA", "testB"):
        (tmp_path / name).mkdir()
    test, split = splits.held_out_data(folder, set())
    assert test.options["phase"] == "test" and split == "held out: testA / testB"


@pytest.mark.parametrize("argv, message", [
    (["--num", "0"], "--num must be >= 1"),
    (["--fid-weights", "nowhere.npz"], "nowhere.npz not found"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--data", "options.seed"], "not of the form KEY=VALUE"),
])
def test_bad_arguments_are_named_before_loading(tmp_path, capsys, argv, message):
    assert cli.main(["eval", "--workdir", str(tmp_path / "no_run"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_missing_run_is_named(tmp_path, capsys):
    assert cli.main(["eval", "--workdir", str(tmp_path)]) == 2
    assert f"instagan eval: error: no checkpoints folder in {tmp_path}" in capsys.readouterr().err


def test_eval_command_on_a_tiny_run(tiny_run, tmp_path, capsys):
    weights = tmp_path / "features.npz"
    np.savez(weights, **random_conv_weights(channels=(4, 8)))
    out = tmp_path / "eval.json"
    argv = ["eval", "--workdir", str(tiny_run), "--num", "3", "--batch-size", "2", "--out", str(out),
            "--fid-weights", str(weights), "--no-progress"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "AtoB" in printed and "background PSNR (dB)" in printed and "FID" in printed
    results = json.loads(out.read_text())
    assert results["step"] == 3 and results["feature_network"] == "instagan-conv-v1"
    assert results["data"]["options"]["seed"] == splits.HELD_OUT_SEED_OFFSET
    for direction in ("AtoB", "BtoA"):
        r = results["directions"][direction]
        assert r["images"] == 3 and r["instances"] >= 3
        assert set(r) == {"images", "instances", "background", "background_outside_input", "background_outside_objects",
                          "masks", "shape", "image_shape", "fid", "kid"}
        assert r["background"]["l1"] >= 0 and r["fid"] >= 0 and set(r["kid"]) == {"mean", "std", "subset_size"}
        assert set(r["shape"]["input"]) == {"rectangularity", "target_fraction", "irregular_fraction"}
    # AtoB's inputs are discs and ellipses, its real targets (BtoA's inputs) squares and rectangles
    a_to_b, b_to_a = results["directions"]["AtoB"]["shape"], results["directions"]["BtoA"]["shape"]
    assert a_to_b["input"]["target_fraction"] < a_to_b["target_real"]["target_fraction"]
    assert a_to_b["target_real"]["rectangularity"] == b_to_a["input"]["rectangularity"]


def test_eval_default_file_without_features(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert cli.main(["eval", "--checkpoint", str(run / "checkpoints" / "2"), "--num", "2", "--no-progress",
                     "--data", "options.seed=5"]) == 0
    printed = capsys.readouterr().out
    assert evaluate.NO_FEATURES in printed and "shapes seed 5 (from --data)" in printed
    results = json.loads((run / "eval" / "step_0000002.json").read_text())
    assert results["step"] == 2 and results["note"] == evaluate.NO_FEATURES and results["feature_network"] is None
    assert "fid" not in results["directions"]["AtoB"]
