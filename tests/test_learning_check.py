"""experiments/learning_check.py and the targets of the learnable tasks (instagan_jax/targets.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

from instagan_jax.methods import load_config
from instagan_jax.targets import TARGETS, read, standing

CHECK = ROOT / "experiments" / "learning_check.py"
TINY = ["model.ngf=4", "model.ndf=4", "data.options.size=8"]


def test_every_target_config_exists_and_loads():
    for name in TARGETS:
        assert load_config(name).name == name


def _instagan_results(masks: float, images: float, psnr: float) -> dict:
    direction = {"shape": {"translated": {"target_fraction": masks}},
                 "image_shape": {"translated": {"target_fraction": images}}, "background": {"psnr_db": psnr}}
    return {"directions": {"AtoB": direction, "BtoA": direction}}


def test_standing_against_the_targets():
    lines, figures, outcome = standing(_instagan_results(0.75, 0.9, 26.0), "discs2squares")
    assert outcome == "PASS" and len(lines) == 6 and all("NOT met" not in line for line in lines)
    assert figures.startswith("AtoB masks in B's shape 0.750 (>= 0.7), AtoB images in B's shape 0.900 (>= 0.7)")
    lines, _, outcome = standing(_instagan_results(0.75, 0.9, 24.9), "discs2squares")
    assert outcome == "FAIL" and sum("NOT met" in line for line in lines) == 2
    missing = {"directions": {"AtoB": {}, "BtoA": {}}}
    assert standing(missing, "discs2squares")[2] == "FAIL" and "missing" in standing(missing, "discs2squares")[1]
    assert standing(missing, "discs2squares_cyclegan")[2] == "REPORTED"  # the baseline has no targets
    assert read({"a": {"b": "inf"}}, ("a", "b")) == float("inf") and read({"a": None}, ("a", "b")) is None


def _check(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def test_an_existing_workdir_is_refused_before_training(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("{}\n")
    done = _check("--method", "instagan", "--workdir", str(tmp_path), timeout=120)
    assert done.returncode != 0 and f"workdir {tmp_path} already holds a run" in done.stderr


@pytest.mark.slow  # ~1-2 min per method: a tiny model trained for 2 iterations, then evaluated
@pytest.mark.parametrize("method", ["instagan", "cyclegan", "pix2pix", "lomit"])
def test_the_check_runs_end_to_end_with_a_tiny_budget(method, tmp_path):
    sets = [arg for item in TINY for arg in ("--set", item)]
    done = _check("--method", method, "--steps", "2", "--num", "4", "--seed", "3", "--workdir", str(tmp_path / "run"),
                  *sets)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"learning {method}: "), done.stdout[-2000:] + done.stderr[-2000:]
    assert "missing" not in last  # every figure of the method's targets is in its eval results
    outcome = last.rsplit("-> ", 1)[1]
    assert outcome == ("REPORTED" if method == "cyclegan" else "FAIL")  # 2 iterations learn nothing
    assert done.returncode == (0 if outcome == "REPORTED" else 1)
    assert "trained 2 of 2 iterations" in done.stdout
    assert load_config(str(tmp_path / "run" / "config.json")).train.seed == 3
