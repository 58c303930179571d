"""CycleGAN and pix2pix through the one training loop and the commands: train, resume, info, translate,
eval, convert. One small run per method (the float64 fixture's architecture) serves every test."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SHARED
from PIL import Image

from instagan_jax import cli, methods
from instagan_jax.methods import load_config

METHOD_CONFIGS = {"cyclegan": "cyclegan_shapes", "pix2pix": "pix2pix_shapes"}
# The fixture's architecture (so that `convert --to-torch` can be checked against its state_dict keys) on
# small shapes images; the built-in config's method, data and losses.
SIZES = {"cyclegan": (32, 24), "pix2pix": (32, 32)}
SMALL = ["model.ngf=8", "model.ndf=8", "model.n_blocks=2", "data.options.size=8", "data.options.height=36",
         "data.options.width=36", "data.num_threads=1", "train.batch_size=2", "log.log_every=1",
         "log.sample_every=2", "log.checkpoint_every=2"]


def _train(name: str, workdir, steps: int) -> int:
    height, width = SIZES[name]
    argv = ["train", "--config", METHOD_CONFIGS[name], "--workdir", str(workdir), "--steps", str(steps), "--no-progress"]
    overrides = [*SMALL, f"data.crop_size=[{height},{width}]"]
    return cli.main([*argv, *(item for override in overrides for item in ("--set", override))])


def _run(capsys, argv: list[str]) -> str:
    capsys.readouterr()
    assert cli.main(argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.fixture(scope="module", params=sorted(METHOD_CONFIGS))
def run(request, tmp_path_factory):
    """(method name, workdir) of a run trained for 2 iterations (checkpoint 2; the resume test adds a third,
    which the other tests do not depend on)."""
    workdir = tmp_path_factory.mktemp(request.param) / "run"
    assert _train(request.param, workdir, 2) == 0
    return request.param, workdir


def test_every_method_is_registered_and_has_a_builtin_config():
    assert methods.names() == ("cyclegan", "instagan", "lomit", "pix2pix")  # the packages of methods/
    for name, config in {**METHOD_CONFIGS, "instagan": "default", "lomit": "lomit_shapes"}.items():
        method = methods.get(name)
        assert method.name == name and load_config(config).method == name
    with pytest.raises(ValueError, match="unknown method 'gan': choose one of cyclegan, instagan, lomit, pix2pix"):
        methods.get("gan")


def test_method_trains_and_resumes(run, capsys):
    name, workdir = run
    capsys.readouterr()
    assert _train(name, workdir, 3) == 0
    assert f"resuming from {workdir / 'checkpoints' / '2'} (iteration 2)" in capsys.readouterr().out
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert all(np.isfinite(value) for line in lines for value in line.values())
    assert (workdir / "samples" / "step_0000003.png").is_file()
    info = json.loads(_run(capsys, ["info", str(workdir)]))
    assert info["step"] == 3 and set(info["param_sum_of_squares"]) == set(methods.get(name).networks)


def test_method_translates_images_of_any_size(run, tmp_path, capsys):
    _, workdir = run
    images = tmp_path / "photos"
    images.mkdir()
    sizes = ((40, 48), (30, 30))
    for i, size in enumerate(sizes):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (*size, 3), np.uint8)).save(images / f"p{i}.png")
    out = tmp_path / "translated"
    printed = _run(capsys, ["translate", str(images), "--workdir", str(workdir), "--out", str(out), "--no-progress"])
    assert "inputs: 2 image(s), all readable" in printed and "instance" not in printed.split("\n")[0]
    for i, size in enumerate(sizes):
        assert np.asarray(Image.open(out / "images" / f"p{i}.png")).shape == (*size, 3)
    assert (out / "index.html").is_file() and not (out / "merged").exists()
    assert cli.main(["translate", str(images), "--workdir", str(workdir), "--out", str(out), "--masks", str(images)]) == 2
    assert "this run's method translates images alone" in capsys.readouterr().err


def test_method_evaluates_on_held_out_data(run, tmp_path, capsys):
    name, workdir = run
    out = tmp_path / "eval.json"
    printed = _run(capsys, ["eval", "--workdir", str(workdir), "--num", "3", "--out", str(out), "--no-progress"])
    assert "PSNR outside the input masks (dB)" in printed and "mask IoU" not in printed
    results = json.loads(out.read_text())
    if name == "cyclegan":  # unpaired: both directions, scored from the images alone
        assert list(results["directions"]) == ["AtoB", "BtoA"] and results["note"].startswith("FID/KID omitted")
        for r in results["directions"].values():
            assert set(r) == {"images", "instances", "background", "background_outside_input", "image_shape",
                              "background_outside_objects"}
            assert r["background"] == r["background_outside_input"]
            assert r["image_shape"]["segmentation_iou_on_inputs"]["median"] > 0.9
    else:  # paired: A -> B against its targets, no FID
        assert "PSNR to the target (dB)" in printed and "FID" not in printed and "note" not in results
        assert list(results["directions"]) == ["AtoB"]
        r = results["directions"]["AtoB"]
        assert r["images"] == 3 and r["target"]["l1"] > 0 and r["target"]["fraction"] == 1.0
        assert r["image_shape"]["target_real"]["target_fraction"] is not None
        (tmp_path / "x.npz").write_bytes(b"")
        assert cli.main(["eval", "--workdir", str(workdir), "--fid-weights", str(tmp_path / "x.npz")]) == 2
        assert "--fid-weights goes with a CycleGAN or InstaGAN or LOMIT run, not a pix2pix run" in capsys.readouterr().err


def test_to_torch_writes_the_reference_state_dicts(run, tmp_path, capsys):
    """`convert --to-torch` writes exactly the keys and shapes of the reference's state_dicts (as recorded
    in the float64 fixture's JSON); `--from-torch` reads them back into a new run with the same networks
    (checksums equal), which writes the same files again."""
    name, workdir = run
    torch = pytest.importorskip("torch", reason="the .pth tests need PyTorch: pip install -e '.[torch]'")
    meta_path = SHARED / "parity" / f"{name}_small_f64.json"
    if not meta_path.is_file():
        pytest.skip(f"{meta_path} not found: shared fixtures live in ../shared beside the project")
    expected = json.loads(meta_path.read_text())["state_dict_keys"]
    _run(capsys, ["convert", "--to-torch", "--checkpoint", str(workdir / "checkpoints" / "2"),
                  "--out", str(tmp_path / "pth")])
    for network, keys in expected.items():
        state_dict = torch.load(tmp_path / "pth" / f"2_net_{network}.pth", weights_only=True)
        assert [(key, list(value.shape)) for key, value in state_dict.items()] == [(k, s) for k, s in keys], network
    height, width = SIZES[name]
    overrides = [f"data.crop_size=[{height},{width}]", "data.options.height=36", "data.options.width=36"]
    printed = _run(capsys, ["convert", "--from-torch", str(tmp_path / "pth"), "--out", str(tmp_path / "back"),
                            "--config", METHOD_CONFIGS[name], *(x for o in overrides for x in ("--set", o))])
    assert "model (read off the weights): ngf=8 ndf=8" in printed and "freshly initialised" not in printed
    if name == "pix2pix":  # the U-Net's depth follows the image size: another size is named up front
        assert cli.main(["convert", "--from-torch", str(tmp_path / "pth"), "--out", str(tmp_path / "wrong"),
                         "--config", METHOD_CONFIGS[name]]) == 2
        assert "the weights' U-Net has 5 levels, data.crop_size 64x64 makes 6" in capsys.readouterr().err
    original, back = (json.loads(_run(capsys, ["info", str(w)])) for w in (workdir / "checkpoints" / "2",
                                                                               tmp_path / "back"))
    assert back["step"] == 0 and back["param_sum_of_squares"] == original["param_sum_of_squares"]
    assert original["workdir"] == str(workdir.resolve()) and original["step"] == 2  # info of a checkpoint folder
    _run(capsys, ["convert", "--to-torch", "--workdir", str(tmp_path / "back"), "--out", str(tmp_path / "again")])
    for network in expected:
        first = torch.load(tmp_path / "pth" / f"2_net_{network}.pth", weights_only=True)
        again = torch.load(tmp_path / "again" / f"0_net_{network}.pth", weights_only=True)
        assert list(first) == list(again) and all(torch.equal(first[k], again[k]) for k in first), network
