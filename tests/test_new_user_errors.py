"""What a new user hits first, as the CLI run they make: one-line errors naming the key or file, exit 2,
before any heavy work, and nothing left behind that blocks the corrected rerun (issue 26's cases)."""

from __future__ import annotations

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
