"""`instagan parity` against the PyTorch reference fixture."""

import json
import shutil

import numpy as np
import pytest

from instagan_jax import cli
from instagan_jax.parity import DEFAULT_TOLERANCES, parse_tolerances


def test_every_reference_check_passes_in_the_command(reference_small, capsys):
    """The whole fixture (forwards, inference, one training iteration) through `instagan parity`."""
    assert cli.main(["parity", str(reference_small)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("parity: ") and lines[-1].endswith(" checks within tolerance")
    passed, total = lines[-1].split()[1].split("/")
    assert passed == total and int(total) >= 94
    names = [line.split()[0] for line in lines if line.endswith(" ok")]
    for required in ("fwd/G_A_full", "fwd/G_B_full", "fwd/D_A_real", "fwd/D_B_fake", "fwd/D_A_batch2_out",
                     "test/fake_B_img", "test/rec_A_seg", "test/fake_A_seg_mul"):
        assert required in names
    for prefix in ("train/step0/loss_", "train/step1/opt_D/grad/D_A/", "train/step1/opt_G/after/G_A/",
                   "final/D_B/", "final_stats/G_A/", "train/visual/"):
        assert any(name.startswith(prefix) for name in names), prefix
    assert any(line.startswith("note: training checks:") for line in lines)


def test_a_wrong_reference_output_fails_the_command(reference_small, tmp_path, capsys):
    with np.load(reference_small) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["fwd/G_A_full"] = arrays["fwd/G_A_full"] + 1e-3
    arrays = {k: v for k, v in arrays.items() if not k.startswith(("train/", "final"))}  # faster: no training
    np.savez(tmp_path / "bad.npz", **arrays)
    shutil.copy(reference_small.with_suffix(".json"), tmp_path / "bad.json")
    assert cli.main(["parity", str(tmp_path / "bad.npz")]) == 1
    out = capsys.readouterr().out
    assert "fwd/G_A_full" in [line.split()[0] for line in out.splitlines() if line.endswith("FAIL")]


def test_missing_fixture_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["parity", str(tmp_path / "nope.npz")]) == 2
    assert "nope.npz" in capsys.readouterr().err


def test_tolerances_parsed_from_the_guidance_text(reference_small):
    text = json.loads(reference_small.with_suffix(".json").read_text())["tolerance_guidance"]
    assert parse_tolerances(text) == {"outputs": ("atol", 1e-4), "losses": ("rtol", 1e-4),
                                      "gradients": ("rtol", 1e-3), "updated": ("atol", 1e-6)}
    assert parse_tolerances("atol 5e-5 on images")["outputs"] == ("atol", 5e-5)
    assert parse_tolerances("")["losses"] == DEFAULT_TOLERANCES["losses"]


@pytest.mark.parametrize("bad_key", ["init/G_A/encoder_img.1.weight"])
def test_not_a_fixture_names_the_missing_array(reference_small, tmp_path, bad_key, capsys):
    with np.load(reference_small) as data:
        arrays = {k: data[k] for k in data.files if k != bad_key}
    np.savez(tmp_path / "partial.npz", **arrays)
    assert cli.main(["parity", str(tmp_path / "partial.npz")]) == 2
    assert bad_key in capsys.readouterr().err
