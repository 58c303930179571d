"""Data parallel: 8 fake CPU devices (NamedSharding over mesh axis 'data') match one device:
three training iterations, global batch 8, samples with 0 to 3 instances (some skip groups)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("multidevice_check.py")


def test_eight_devices_match_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu",
           "JAX_ENABLE_X64": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["devices"] == 8 and result["step"] == 3 and result["same_run_flags"]
    # float64 (see multidevice_check.py for why not float32): the same numbers up to round-off.
    assert result["first_group_loss_rel_diff"] < 1e-12, result
    diffs = result["max_abs_diff"]
    assert diffs["params"] < 1e-8, diffs  # after 6 Adam steps on each network
    assert diffs["spectral"] < 1e-10 and diffs["pools"] < 1e-10 and diffs["losses"] < 1e-10, diffs
    assert diffs["opt"] < 1e-9, diffs
