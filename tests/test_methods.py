"""Every method through the one training loop and the commands: train, resume, translate, eval, info."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from instagan_jax import cli, methods
from instagan_jax.config import load_config

# A tiny model on small shapes images (the built-in config's method and data, sized for a test).
TINY = ["model.ngf=4", "model.ndf=4", "model.n_blocks=1", "data.options.size=8", "data.options.height=36",
        "data.options.width=36", "data.crop_size=[32,32]", "data.num_threads=1", "train.batch_size=2",
        "log.log_every=1", "log.sample_every=2", "log.checkpoint_every=2"]
METHOD_CONFIGS = {"cyclegan": "cyclegan_shapes", "pix2pix": "pix2pix_shapes"}


def _train(config: str, workdir, steps: int) -> int:
    argv = ["train", "--config", config, "--workdir", str(workdir), "--steps", str(steps), "--no-progress"]
    return cli.main([*argv, *(item for override in TINY for item in ("--set", override))])


def test_every_method_is_registered_and_has_a_builtin_config():
    assert methods.NAMES == ("instagan", "cyclegan", "pix2pix")
    for name, config in METHOD_CONFIGS.items():
        method = methods.get(name)
        assert method.name == name and load_config(config).method == name
    with pytest.raises(ValueError, match="unknown method 'gan': choose one of instagan, cyclegan, pix2pix"):
        methods.get("gan")


@pytest.mark.parametrize("name", sorted(METHOD_CONFIGS))
def test_method_trains_resumes_translates_and_evaluates(name, tmp_path, capsys):
    run = tmp_path / "run"
    assert _train(METHOD_CONFIGS[name], run, 2) == 0
    assert _train(METHOD_CONFIGS[name], run, 3) == 0
    printed = capsys.readouterr().out
    assert f"resuming from {run / 'checkpoints' / '2'} (iteration 2)" in printed
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert all(np.isfinite(value) for line in lines for value in line.values())
    assert (run / "samples" / "step_0000003.png").is_file()

    info = json.loads(_run(capsys, ["info", str(run)]))
    assert info["step"] == 3 and set(info["param_sum_of_squares"]) == set(methods.get(name).networks)

    images = tmp_path / "photos"
    images.mkdir()
    for i, size in enumerate(((40, 48), (30, 30))):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (*size, 3), np.uint8)).save(images / f"p{i}.png")
    out = tmp_path / "translated"
    _run(capsys, ["translate", str(images), "--workdir", str(run), "--out", str(out), "--no-progress"])
    for i, size in enumerate(((40, 48), (30, 30))):
        assert np.asarray(Image.open(out / "images" / f"p{i}.png")).shape == (*size, 3)
    assert (out / "index.html").is_file() and not (out / "merged").exists()
    assert cli.main(["translate", str(images), "--workdir", str(run), "--out", str(out), "--masks", str(images)]) == 2
    assert "this run's method translates images alone" in capsys.readouterr().err


def _run(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert cli.main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def test_cyclegan_eval_scores_images_without_masks(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train("cyclegan_shapes", run, 1) == 0
    out = tmp_path / "eval.json"
    printed = _run(capsys, ["eval", "--workdir", str(run), "--num", "2", "--out", str(out), "--no-progress"])
    assert "PSNR outside the input masks (dB)" in printed and "mask IoU" not in printed
    for r in json.loads(out.read_text())["directions"].values():
        assert set(r) == {"images", "instances", "background", "background_outside_input", "image_shape"}
        assert r["background"] == r["background_outside_input"]
        assert r["image_shape"]["segmentation_iou_on_inputs"]["median"] > 0.9


def test_pix2pix_eval_scores_outputs_against_their_targets(tmp_path, capsys):
    run = tmp_path / "run"
    assert _train("pix2pix_shapes", run, 1) == 0
    assert cli.main(["eval", "--workdir", str(run), "--num", "2", "--fid-weights", str(tmp_path / "x.npz")]) == 2
    out = tmp_path / "eval.json"
    (tmp_path / "x.npz").write_bytes(b"")
    assert cli.main(["eval", "--workdir", str(run), "--num", "2", "--fid-weights", str(tmp_path / "x.npz")]) == 2
    assert "a paired run (pix2pix) is scored against its own targets" in capsys.readouterr().err
    printed = _run(capsys, ["eval", "--workdir", str(run), "--num", "3", "--out", str(out), "--no-progress"])
    assert "PSNR to the target (dB)" in printed and "FID" not in printed
    results = json.loads(out.read_text())
    assert list(results["directions"]) == ["AtoB"] and "note" not in results
    r = results["directions"]["AtoB"]
    assert r["images"] == 3 and r["target"]["l1"] > 0 and r["target"]["fraction"] == 1.0
    assert r["image_shape"]["target_real"]["target_fraction"] is not None
