"""experiments/gpu_suite.sh rehearsed on the CPU: every item writes its JSON and table, batch 1 and the
filling batch both run, and a rerun with the same compilation cache compiles nothing new."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "experiments" / "gpu_suite.sh"
ITEMS = ("32_float32", "32_bfloat16")


def rehearse(out: Path, cache: Path) -> str:
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SUITE), "--rehearse", "--out", str(out), "--cache", str(cache),
                             "--budget", "1500"], capture_output=True, text=True, env=env, timeout=1800, check=False)
    assert result.returncode == 0, result.stderr
    return (out / "suite.log").read_text()


@pytest.mark.slow
def test_rehearsal_writes_each_item_and_reruns_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    log = rehearse(tmp_path / "first", cache)
    for item in ITEMS:
        assert f"{item}: done" in log, log
        rows = json.loads((tmp_path / "first" / f"{item}.json").read_text())["rows"]
        assert rows[0]["batch"] == 1 and rows[1]["fill"] and rows[1]["batch"] > 1, rows
        for row in rows:
            ours = row["ours"]
            assert ours["images_per_s"] == pytest.approx(row["batch"] / ours["median_s"])
            assert ours["temp_mib"] + ours["argument_mib"] <= 150  # the filling batch stays inside --fill-mib
        if "ref" in rows[0]:  # torch and the reference source are here
            assert rows[0]["speedup_images_per_s"] == pytest.approx(
                rows[0]["ours"]["images_per_s"] / rows[0]["ref"]["images_per_s"])
        table = (tmp_path / "first" / f"{item}.md").read_text()
        assert f"| 32x32 | ours | {rows[1]['batch']} (fill) |" in table
    assert "model.compute_dtype=bfloat16" in json.dumps(json.loads((tmp_path / "first" / "32_bfloat16.json").read_text()))
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "the first run left nothing in the compilation cache"
    rehearse(tmp_path / "second", cache)
    assert sorted(p.name for p in cache.iterdir()) == entries  # every compile of the rerun was a cache hit


def test_unknown_argument_is_refused_before_anything_runs(tmp_path):
    result = subprocess.run(["bash", str(SUITE), "--sizes", "64", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 2 and "unknown argument --sizes" in result.stderr
    assert not (tmp_path / "out").exists()
