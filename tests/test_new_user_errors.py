"""What a new user hits first, as the CLI run they make: one-line errors naming the key or file, exit 2,
before any heavy work, and nothing left behind that blocks the corrected rerun (issue 26's cases)."""

from __future__ import annotations

import numpy as np
import pytest

from instagan_jax import cli


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("instagan ") and ": error: " in lines[0], err
    return lines[0]


@pytest.mark.parametrize("config,crop,images", [("discs2squares", "[64,64]", "32x32"),
                                               ("lomit_learnable", "[64,64]", "32x32")])
def test_a_crop_larger_than_the_drawn_images_is_named_before_anything_is_written(config, crop, images, tmp_path,
                                                                                 capsys):
    workdir = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--config", config, "--workdir", workdir, "--set", f"data.crop_size={crop}",
                        "--steps", "1", "--no-progress")
    line = _one_line_error(err)
    assert code == 2 and "data.crop_size" in line and images in line and "skip_bad" not in line, line
    assert not workdir.exists()  # so the corrected rerun starts clean


def test_a_crop_larger_than_the_load_size_is_a_config_error(capsys, tmp_path):
    code, _, err = _cli(capsys, "train", "--config", "default", "--workdir", tmp_path / "run",
                        "--set", "data.load_size=[48,48]", "--no-progress")
    line = _one_line_error(err)
    assert code == 2 and "data.crop_size [64, 64] and data.load_size [48, 48]" in line, line


def test_a_typo_in_the_data_options_names_the_key_and_the_known_ones(tmp_path, capsys):
    workdir = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--config", "default", "--workdir", workdir, "--set", "data.options.sizee=10",
                        "--no-progress")
    line = _one_line_error(err)
    assert code == 2 and "data.options.sizee" in line and "max_instances" in line and "size" in line, line
    assert "__init__" not in line and not workdir.exists()


def test_a_failed_config_leaves_no_workdir(tmp_path, capsys):
    workdir = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--config", "default", "--workdir", workdir, "--set", "train.ins_per=3",
                        "--no-progress")
    assert code == 2 and "ins_per" in _one_line_error(err)
    assert not workdir.exists()


def _folder_data(root, masks_in: str) -> str:
    """trainA/B with two images each; box masks only in the domains named in `masks_in`."""
    from data_helpers import box_mask, random_image, save

    rng = np.random.default_rng(0)
    for domain in "AB":
        (root / f"train{domain}_seg").mkdir(parents=True, exist_ok=True)
        for index in range(2):
            save(root / f"train{domain}" / f"{index}.png", random_image(rng, 40, 40))
            if domain in masks_in:
                save(root / f"train{domain}_seg" / f"{index}_0.png", box_mask(40, 40, 4, 4, 20, 20))
    return f'data.options={{"root": "{root}", "phase": "train"}}'


def test_a_folder_domain_without_any_mask_stops_an_instance_method_before_compiling(tmp_path, capsys):
    workdir = tmp_path / "run"
    options = _folder_data(tmp_path / "data", masks_in="A")
    code, _, err = _cli(capsys, "train", "--config", "default", "--workdir", workdir, "--set", "data.kind=folder",
                        "--set", options, "--set", "data.crop_size=[32,32]", "--no-progress")
    line = _one_line_error(err)
    assert code == 2 and "no instance mask at all" in line and "trainB_seg" in line, line
    assert not workdir.exists()
    # CycleGAN reads the images only: the same folder trains
    code, _, err = _cli(capsys, "train", "--config", "cyclegan_shapes", "--workdir", workdir, "--set", "data.kind=folder",
                        "--set", options, "--set", "data.crop_size=[32,32]", "--steps", "1", "--no-progress")
    assert code == 0, err


def test_a_paper_config_without_its_prepared_data_names_the_command_that_makes_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, "train", "--config", "shp2gir_coco", "--workdir", "w", "--no-progress")
    line = _one_line_error(err)
    assert code == 2 and "instagan_coco/sheep_giraffe" in line, line
    assert "instagan prepare coco --root COCO --cat-a sheep --cat-b giraffe --out datasets/tfds" in line
    assert not (tmp_path / "w").exists()


def test_a_full_disk_is_one_line_naming_the_folder_and_the_free_space(tmp_path, capsys, monkeypatch):
    """Issue 26, case 7: the space a checkpoint needs is checked before orbax writes (a real full disk,
    a 3 MB tmpfs, printed this one line; orbax itself failing midway printed some 1,500)."""
    import shutil

    from instagan_jax import checkpoint

    real = shutil.disk_usage
    saves = []

    def second_save_finds_the_disk_full(path):
        saves.append(path)
        usage = real(path)
        return usage._replace(free=0) if len(saves) > 1 else usage

    monkeypatch.setattr(checkpoint.shutil, "disk_usage", second_save_finds_the_disk_full)
    workdir = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--config", "default", "--workdir", workdir, "--set", "model.ngf=4",
                        "--set", "model.ndf=4", "--set", "model.n_blocks=1", "--set", "data.options.size=4",
                        "--set", "log.checkpoint_every=1", "--steps", "2", "--no-progress")
    line = _one_line_error(err)
    assert code == 2 and "no space to write checkpoint 2 in" in line and "0.0 MiB free" in line, line
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["1"]  # the earlier one is kept


def test_an_eval_out_below_a_file_is_refused_before_the_model_loads(tiny_run, tmp_path, capsys):
    (tmp_path / "a_file").write_text("x")
    code, out, err = _cli(capsys, "eval", "--workdir", tiny_run, "--out", tmp_path / "a_file" / "eval.json",
                          "--no-progress")
    line = _one_line_error(err)
    assert code == 2 and "a_file is a file, not a folder" in line and "step" not in out, (line, out)


@pytest.mark.parametrize("signum, advice", [("SIGTERM", False), ("SIGINT", True)])
def test_the_stop_message_gives_ctrl_c_advice_only_for_ctrl_c(signum, advice, capsys):
    import os
    import signal
    import time

    from instagan_jax.loop import stop_on_signals

    with stop_on_signals() as flag:
        os.kill(os.getpid(), getattr(signal, signum))
        time.sleep(0.05)  # the handler runs in the main thread between bytecodes
    out = capsys.readouterr().out
    assert flag["signal"] == signum and "saving a checkpoint" in out
    assert ("Ctrl-C again" in out) == advice, out
