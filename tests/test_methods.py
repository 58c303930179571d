"""Every method through the one training loop and the commands: train, resume, translate, eval, info."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED
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


@pytest.mark.parametrize("name, size", [("cyclegan", (32, 24)), ("pix2pix", (32, 32))])
def test_to_torch_writes_the_reference_state_dicts(name, size, tmp_path, capsys):
    """A run of the fixture's architecture, written with `convert --to-torch`, has exactly the keys and
    shapes of the reference's state_dicts (as recorded in the float64 fixture's JSON)."""
    torch = pytest.importorskip("torch", reason="the .pth tests need PyTorch: pip install -e '.[torch]'")
    meta_path = SHARED / "parity" / f"{name}_small_f64.json"
    if not meta_path.is_file():
        pytest.skip(f"{meta_path} not found: shared fixtures live in ../shared beside the project")
    expected = json.loads(meta_path.read_text())["state_dict_keys"]
    run = tmp_path / "run"
    overrides = ["model.ngf=8", "model.ndf=8", "model.n_blocks=2", f"data.crop_size=[{size[0]},{size[1]}]",
                 "data.options.size=4", "data.options.height=36", "data.options.width=36", "data.num_threads=1"]
    argv = ["train", "--config", METHOD_CONFIGS[name], "--workdir", str(run), "--steps", "1", "--no-progress"]
    assert cli.main([*argv, *(item for override in overrides for item in ("--set", override))]) == 0
    _run(capsys, ["convert", "--to-torch", "--workdir", str(run), "--out", str(tmp_path / "pth")])
    for network, keys in expected.items():
        state_dict = torch.load(tmp_path / "pth" / f"1_net_{network}.pth", weights_only=True)
        assert [(key, list(value.shape)) for key, value in state_dict.items()] == [(k, s) for k, s in keys], network
    assert cli.main(["convert", "--from-torch", str(tmp_path / "pth"), "--out", str(tmp_path / "back"),
                     "--config", METHOD_CONFIGS[name]]) == 2
    assert "--from-torch reads the reference's InstaGAN networks" in capsys.readouterr().err
