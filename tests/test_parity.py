"""`instagan parity` against the PyTorch reference fixtures (float64: exact; float32: what it can settle)."""

import json
import shutil

import numpy as np
import pytest

from instagan_jax import cli
from instagan_jax.methods.instagan.parity import load_fixture, step0_l1_ties
from instagan_jax.parity.common import (
    DEFAULT_TOLERANCES,
    Check,
    format_report,
    parse_tolerances,
)


def _report(capsys) -> tuple[list[str], dict[str, str]]:
    """The command's lines and each check's result (ok / FAIL / info) by name."""
    lines = capsys.readouterr().out.strip().splitlines()
    results = {}
    for line in lines:
        if line.endswith((" ok", " FAIL", " info")):
            results[line.split("  ")[0].strip()] = line.split()[-1]
    return lines, results


def _counts(last_line: str) -> tuple[int, int]:
    assert last_line.startswith("parity: ") and last_line.endswith(" checks within tolerance"), last_line
    passed, total = last_line.split()[1].split("/")
    return int(passed), int(total)


def test_float64_fixture_passes_every_check_in_float64(reference_small_f64, capsys):
    """The whole iteration at the fixture's float64 tolerances: nothing skipped, nothing informational."""
    assert cli.main(["parity", str(reference_small_f64)]) == 0
    lines, results = _report(capsys)
    passed, total = _counts(lines[-1])
    assert passed == total >= 94
    assert set(results.values()) == {"ok"}
    assert "note: fixture dtype float64: compared in float64" in lines
    for prefix in ("fwd/G_A_full", "test/rec_A_seg", "train/step0/loss_", "train/step1/opt_G/grad/G_A/",
                   "train/step1/opt_D/after/D_A/", "final/G_A/", "final_stats/G_B/", "train/visual/fake_B_img"):
        assert any(name.startswith(prefix) for name in results), prefix
    tolerances = {(line.split()[-3], float(line.split()[-2])) for line in lines if line.endswith(" ok")}
    assert tolerances == {("atol", 0.0), ("atol", 1e-9), ("rtol", 1e-9), ("rtol", 1e-7)}  # the fixture's guidance


@pytest.mark.slow  # ~100 s; CI runs the float64 fixture, `make parity` both
def test_float32_fixture_judges_what_float32_settles(reference_small, capsys):
    """Forwards, inference and the first sub-step are judged; values after noise-driven Adam steps are
    reported as information, with the reason."""
    assert cli.main(["parity", str(reference_small)]) == 0
    lines, results = _report(capsys)
    passed, total = _counts(lines[-1])
    assert passed == total >= 50
    judged = {name for name, result in results.items() if result == "ok"}
    info = {name for name, result in results.items() if result == "info"}
    for required in ("fwd/G_A_full", "fwd/D_A_batch2_out (reference's batch-wide slot rule)", "test/fake_B_img",
                     "train/step0/loss_G_A", "train/step0/opt_D/grad/D_A/* (5 tensors)",
                     "train/step0/opt_D/after/D_A/* (5 tensors)"):
        assert required in judged, required
    assert all(name.startswith(("train/step1/", "final", "train/visual/", "train/step0/opt_G/")) for name in info)
    assert any(name.startswith("final_stats/") for name in info)
    assert any("reported, not judged" in line for line in lines if line.startswith("note:"))
    assert f"{len(info)} informational comparison(s), not counted (see the notes)" in lines


def test_float32_ties_are_found_and_informational_rows_are_not_counted(reference_small, reference_small_f64):
    count, gap = step0_l1_ties(load_fixture(reference_small))
    assert count == 7 and gap < 3e-7  # input pixels within 1e-4 of a step-0 generator output
    assert step0_l1_ties(load_fixture(reference_small_f64))[1] > 1e-5
    checks = [Check("a", "outputs", "atol", 1e-4, 1e-5), Check("b", "updated", "atol", 1e-6, 4e-4, True)]
    lines = format_report(checks, ["why"]).splitlines()
    assert lines[-1] == "parity: 1/1 checks within tolerance"
    assert lines[2].endswith(" ok") and lines[3].endswith(" info") and "note: why" in lines
    assert "1 informational comparison(s), not counted (see the notes)" in lines


def test_fixture_dtype_comes_from_its_json(reference_small, reference_small_f64):
    assert load_fixture(reference_small).config.dtype == "float32"
    assert load_fixture(reference_small_f64).config.dtype == "float64"


def test_a_wrong_reference_output_fails_the_command(reference_small_f64, tmp_path, capsys):
    with np.load(reference_small_f64) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["fwd/G_A_full"] = arrays["fwd/G_A_full"] + 1e-8  # above float64's atol 1e-9
    arrays = {k: v for k, v in arrays.items() if not k.startswith(("train/", "final"))}  # faster: no training
    np.savez(tmp_path / "bad.npz", **arrays)
    shutil.copy(reference_small_f64.with_suffix(".json"), tmp_path / "bad.json")
    assert cli.main(["parity", str(tmp_path / "bad.npz")]) == 1
    _, results = _report(capsys)
    assert results["fwd/G_A_full"] == "FAIL"


def test_missing_fixture_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["parity", str(tmp_path / "nope.npz")]) == 2
    assert "nope.npz" in capsys.readouterr().err


def test_tolerances_parsed_from_the_guidance_text(reference_small, reference_small_f64):
    text = json.loads(reference_small.with_suffix(".json").read_text())["tolerance_guidance"]
    assert parse_tolerances(text) == {"outputs": ("atol", 1e-4), "losses": ("rtol", 1e-4),
                                      "gradients": ("rtol", 1e-3), "updated": ("atol", 1e-6)}
    text = json.loads(reference_small_f64.with_suffix(".json").read_text())["tolerance_guidance"]
    assert parse_tolerances(text) == {"outputs": ("atol", 1e-9), "losses": ("rtol", 1e-9),
                                      "gradients": ("rtol", 1e-7), "updated": ("atol", 1e-9)}
    assert parse_tolerances("atol 5e-5 on images")["outputs"] == ("atol", 5e-5)
    assert parse_tolerances("")["losses"] == DEFAULT_TOLERANCES["losses"]


@pytest.mark.parametrize("bad_key", ["init/G_A/encoder_img.1.weight"])
def test_not_a_fixture_names_the_missing_array(reference_small, tmp_path, bad_key, capsys):
    with np.load(reference_small) as data:
        arrays = {k: data[k] for k in data.files if k != bad_key}
    np.savez(tmp_path / "partial.npz", **arrays)
    assert cli.main(["parity", str(tmp_path / "partial.npz")]) == 2
    assert bad_key in capsys.readouterr().err
