"""Multi-process training: launch settings, and two real processes on localhost (CPU, jax's default
gloo collectives) that train the same as one process on two devices, with a checkpoint that one
process resumes.

The two runs are compared bit for bit: in both, each of the two devices holds one sample of the
global batch of 2 in the same order, and the cross-device sums add the same two numbers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from instagan_jax import cli, loop
from instagan_jax.checkpoint import Checkpoints, replicated_abstract
from instagan_jax.cluster import cluster_settings
from instagan_jax.methods import config_from_dict
from instagan_jax.methods.instagan.step import init_state

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600  # per launch; compiling takes ~1 min of CPU per process
TINY_RUN = {
    "name": "tiny-multiprocess",
    "model": {"ngf": 4, "ndf": 4, "n_blocks": 1},
    "data": {"kind": "shapes", "options": {"size": 8, "height": 36, "width": 36, "max_instances": 2},
             "crop_size": [32, 32], "num_threads": 1},
    "train": {"batch_size": 2, "ins_max": 2, "ins_per": 1, "pool_size": 2, "unroll_groups": False},
    "log": {"log_every": 1, "sample_every": 100, "checkpoint_every": 1, "keep_checkpoints": 5},
}
CLUSTER_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def test_cluster_settings_flags_win_over_the_environment():
    environ = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert cluster_settings(environ=environ) == {"coordinator_address": "10.0.0.1:1234", "num_processes": 4,
                                                 "process_id": 3}
    assert cluster_settings("host:99", None, 1, environ=environ) == {"coordinator_address": "host:99",
                                                                     "num_processes": 4, "process_id": 1}
    assert cluster_settings(environ={}) == {}  # nothing set: jax detects the cluster (TPU, SLURM)


def test_cluster_settings_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"missing the number of processes \(--num-processes or JAX_NUM_PROCESSES\)"):
        cluster_settings(environ={"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_PROCESS_ID": "0"})
    with pytest.raises(ValueError, match=r"JAX_PROCESS_ID='one' is not an integer"):
        cluster_settings(environ={"JAX_PROCESS_ID": "one"})
    with pytest.raises(ValueError, match=r"process id 2 is out of range for 2 processes \(0 to 1\)"):
        cluster_settings("h:1", 2, 2, environ={})
    with pytest.raises(ValueError, match=r"number of processes must be at least 1, got 0"):
        cluster_settings("h:1", 0, 0, environ={})


def test_cli_incomplete_launch_flags_fail_before_any_work(tmp_path, capsys, monkeypatch):
    for variable in CLUSTER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    workdir = tmp_path / "run"
    assert cli.main(["train", "--workdir", str(workdir), "--num-processes", "2", "--process-id", "0"]) == 2
    assert "missing the coordinator address (--coordinator or JAX_COORDINATOR_ADDRESS)" in capsys.readouterr().err
    assert not workdir.exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(**extra: str) -> dict[str, str]:
    """This environment, on CPU with one device, the worktree first on the path, no cluster settings."""
    env = {k: v for k, v in os.environ.items() if k not in (*CLUSTER_VARIABLES, "XLA_FLAGS")}
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return {**env, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu", **extra}


def _run_together(launches: list[tuple[list[str], dict[str, str]]]) -> list[str]:
    """Run commands at once; all must exit 0 within TIMEOUT_S (else all are killed). Their outputs."""
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd, env in launches]
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while any(p.poll() is None for p in procs):
            failed = any(p.returncode not in (None, 0) for p in procs)
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outputs = [p.communicate()[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, f"{p.args} exited {p.returncode}:\n{out[-4000:]}"
    return outputs


def _saved(workdir: Path, step: int):
    """(state, data state) of a workdir's checkpoint at `step`, on this process's first device."""
    spec = loop.step_spec(config_from_dict(TINY_RUN), 1.0)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = replicated_abstract(jax.eval_shape(lambda: init_state(spec)), device)
    checkpoints = Checkpoints(workdir)
    try:
        restored = checkpoints.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), data=ocp.args.JsonRestore()))
    finally:
        checkpoints.close()
    return restored["state"], restored["data"]


def _assert_same_state(a, b, where: str) -> None:
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=f"{where}: {jax.tree_util.keystr(path)}")


@pytest.mark.slow  # ~140 s: two training processes and a third that resumes; `make test-all` runs it
def test_two_processes_train_like_one_process_on_two_devices_and_one_process_resumes(tmp_path):
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY_RUN))
    two, one = tmp_path / "two_processes", tmp_path / "one_process"
    train = ["train", "--config", str(config_file), "--no-progress"]
    launch = [sys.executable, "-m", "instagan_jax.cli", *train]
    port = _free_port()
    address = f"127.0.0.1:{port}"
    local = {"JAX_COORDINATOR_BIND_ADDRESS": address}  # the coordinator listens on localhost only
    _run_together([  # process 0 as docs/TRAINING.md says (environment), process 1 with the flags
        ([*launch, "--workdir", str(two), "--steps", "2", "--set", "train.distributed=true"],
         _environment(JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID="0", **local)),
        ([*launch, "--workdir", str(two), "--steps", "2", "--coordinator", address, "--num-processes", "2",
          "--process-id", "1"], _environment(**local)),
    ])
    # One process, two devices: a 3-step run, then the 2-process workdir resumed to 3 (one compile).
    each_workdir = ("import sys; from instagan_jax import cli\n"
                    "for workdir in sys.argv[1:]:\n"
                    f"    assert cli.main({[*train, '--steps', '3']!r} + ['--workdir', workdir]) == 0\n")
    two_devices = _environment(XLA_FLAGS="--xla_force_host_platform_device_count=2")
    (out,) = _run_together([([sys.executable, "-c", each_workdir, str(one), str(two)], two_devices)])
    assert f"resuming from {two / 'checkpoints' / '2'} (iteration 2)" in out
    for step in (2, 3):
        (state_two, data_two), (state_one, data_one) = _saved(two, step), _saved(one, step)
        assert data_two["batches_served"] == data_one["batches_served"] == step
        assert data_two["pipeline"]["shard_count"] == {2: 2, 3: 1}[step]  # saved by 2 processes, then by 1
        _assert_same_state(state_two, state_one, f"step {step}")  # bit for bit (see the module doc)
    metrics = [(workdir / "metrics.jsonl").read_text().splitlines() for workdir in (two, one)]
    assert metrics[0] == metrics[1] and len(metrics[0]) == 3


@pytest.mark.packaging  # ~90 s; run by `make test-packaging` (CI)
def test_the_launch_script_starts_two_processes_that_train_as_one_run(tmp_path):
    """A pod simulated on localhost: each process started as on a host of its own, by
    `experiments/launch/gpu.sh process` running the installed `instagan` command."""
    instagan = Path(sys.executable).parent / "instagan"
    if not instagan.is_file():
        pytest.skip(f"no {instagan}: install the package (make install) to run its console script")
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY_RUN))
    workdir = tmp_path / "run"
    address = f"127.0.0.1:{_free_port()}"
    environment = _environment(JAX_COORDINATOR_BIND_ADDRESS=address, INSTAGAN=str(instagan))
    launch = ["bash", str(ROOT / "experiments" / "launch" / "gpu.sh"), "process", "--coordinator", address,
              "--num-processes", "2"]
    train = ["--", "--config", str(config_file), "--workdir", str(workdir), "--steps", "2", "--no-progress"]
    outputs = _run_together([([*launch, "--process-id", str(index), *train], environment) for index in (0, 1)])
    assert all("now at iteration 2" in out for out in outputs)
    state, data_state = _saved(workdir, 2)
    assert data_state["batches_served"] == 2 and data_state["pipeline"]["shard_count"] == 2  # one run of 2 processes
    assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 2  # written once, by process 0
