"""Data parallel: 8 fake CPU devices (NamedSharding over mesh axis 'data') match one device:
three training iterations, global batch 8, samples with 0 to 3 instances (some skip groups); and LOMIT,
four iterations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("multidevice_check.py")


def run_check(*args: str) -> dict:
    """multidevice_check.py's printed result, run with 8 fake CPU devices in float64."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
           "JAX_ENABLE_X64": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_eight_devices_match_one_device():
    result = run_check()
    assert result["devices"] == 8 and result["step"] == 3 and result["same_run_flags"]
    # float64 (see multidevice_check.py for why not float32): the same numbers up to round-off.
    assert result["first_group_loss_rel_diff"] < 1e-12, result
    diffs = result["max_abs_diff"]
    assert diffs["params"] < 1e-8, diffs  # after 6 Adam steps on each network
    assert diffs["spectral"] < 1e-10 and diffs["pools"] < 1e-10 and diffs["losses"] < 1e-10, diffs
    assert diffs["opt"] < 1e-9, diffs


def test_lomit_on_eight_devices_matches_one_device():
    """Each exemplar is the previous image of the global batch (a roll across devices), batch-norm
    statistics are over the global batch, and the generator's update is a lax.cond: all as on one device."""
    result = run_check("lomit")
    assert result["devices"] == 8 and result["step"] == 4
    assert result["generator_updates"] == [False, True, False, True]
    diffs = result["max_abs_diff"]
    assert diffs["params"] < 1e-9 and diffs["opt"] < 1e-9 and diffs["batch_stats"] < 1e-10, diffs
    assert diffs["losses"] < 1e-10, diffs
