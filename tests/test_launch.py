"""The launch scripts of experiments/launch: what their --dry-run prints (the exact commands), and
their errors. Running them for real is simulated in tests/test_multiprocess.py (two processes on
localhost through `gpu.sh process`)."""

from __future__ import annotations

import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "experiments" / "launch"
TPU = ["--tpu", "my-tpu", "--zone", "us-central2-b", "--data", "gs://bucket/tfds",
       "--checkpoints", "gs://bucket/runs/shp2gir"]


def _launch(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LAUNCH / script), *args], capture_output=True, text=True, timeout=60)


def _commands(done: subprocess.CompletedProcess) -> list[list[str]]:
    """The printed commands as argument lists; every stdout line must be one."""
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(line.startswith("+ ") for line in lines), done.stdout
    return [shlex.split(line[2:]) for line in lines]


def test_tpu_pod_dry_run_builds_copies_and_starts_every_worker():
    build, copy, start = _commands(_launch("tpu_pod.sh", *TPU, "--dry-run", "--", "--set", "train.batch_size=32"))
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    wheel = ROOT / "dist" / f"instagan_jax-{version}-py3-none-any.whl"
    assert build == ["python3", "-m", "build", "--wheel", "--outdir", str(ROOT / "dist"), str(ROOT)]
    assert copy == ["gcloud", "compute", "tpus", "tpu-vm", "scp", str(wheel), f"my-tpu:/tmp/{wheel.name}",
                    "--worker=all", "--zone=us-central2-b"]
    assert start[:7] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu", "--worker=all"]
    assert start[7] == "--zone=us-central2-b" and start[8].startswith("--command=")
    steps = [shlex.split(step) for step in start[8].removeprefix("--command=").split(";")]
    assert steps[0] == ["set", "-e"]
    assert steps[1] == ["python3", "-m", "venv", "$HOME/instagan_venv"]
    assert steps[2] == ["$HOME/instagan_venv/bin/pip", "install", "--quiet", "--upgrade", "jax[tpu]", "gcsfs",
                        f"/tmp/{wheel.name}"]
    assert steps[4] == ["gcloud", "storage", "rsync", "--recursive", "gs://bucket/tfds", "$HOME/instagan_data"]
    assert steps[5] == ["$HOME/instagan_venv/bin/python", "-m", "instagan_jax.cli", "train", "--config",
                        "shp2gir_coco", "--workdir", "runs/shp2gir_coco", "--set", "train.distributed=true",
                        "--set", "log.checkpoint_dir=gs://bucket/runs/shp2gir", "--set", "train.batch_size=32",
                        "--set", "data.options.data_dir=$HOME/instagan_data"]


def test_tpu_pod_with_a_wheel_project_and_python(tmp_path):
    wheel = tmp_path / "instagan_jax-9.9-py3-none-any.whl"
    wheel.write_bytes(b"")
    copy, start = _commands(_launch("tpu_pod.sh", *TPU, "--project", "p1", "--wheel", str(wheel),
                                    "--python", "python3.12", "--dry-run"))
    assert copy[-3:] == ["--worker=all", "--zone=us-central2-b", "--project=p1"]
    assert start[-2] == "--project=p1" and "python3.12 -m venv" in start[-1]


@pytest.mark.parametrize("args, message", [
    (TPU[2:], "--tpu is required"),
    ([*TPU[:4], "--data", "/local/data", *TPU[6:]], "--data must be a gs:// folder, got /local/data"),
    ([*TPU[:6], "--checkpoints", "runs/x"], "--checkpoints must be a gs:// folder"),
    ([*TPU, "--wheel", "missing.whl"], "no wheel missing.whl"),
    ([*TPU, "--zone"], "--zone needs a value"),
    ([*TPU, "--bogus"], "unknown option --bogus"),
])
def test_tpu_pod_errors_before_any_command(args, message):
    done = _launch("tpu_pod.sh", *args, "--dry-run")
    assert done.returncode == 2 and message in done.stderr and "+ " not in done.stdout


def test_gpu_dry_runs_of_each_mode():
    train = ["--", "--config", "shp2gir_coco", "--workdir", "/shared/run"]
    assert _commands(_launch("gpu.sh", "local", "--dry-run", *train)) == [
        ["instagan", "train", *train[1:]]]
    assert _commands(_launch("gpu.sh", "local", "--gpus", "4", "--dry-run", *train)) == [
        ["env", "CUDA_VISIBLE_DEVICES=0,1,2,3", "instagan", "train", *train[1:]]]
    assert _commands(_launch("gpu.sh", "slurm", "--nodes", "2", "--gpus-per-node", "8", "--partition", "gpu",
                             "--time", "24:00:00", "--dry-run", *train)) == [
        ["srun", "--nodes=2", "--ntasks-per-node=8", "--gpus-per-node=8", "--partition=gpu", "--time=24:00:00",
         "instagan", "train", *train[1:], "--set", "train.distributed=true"]]
    assert _commands(_launch("gpu.sh", "process", "--coordinator", "10.0.0.1:1234", "--num-processes", "2",
                             "--process-id", "1", "--dry-run", *train)) == [
        ["env", "JAX_COORDINATOR_ADDRESS=10.0.0.1:1234", "JAX_NUM_PROCESSES=2", "JAX_PROCESS_ID=1",
         "instagan", "train", *train[1:], "--set", "train.distributed=true"]]


@pytest.mark.parametrize("args, message", [
    ([], "give a mode"),
    (["cluster"], "unknown mode cluster"),
    (["local", "--dry-run"], "no training options after '--'"),
    (["local", "--gpus", "0", "--dry-run", "--", "--workdir", "w"], "--gpus must be a positive integer, got '0'"),
    (["slurm", "--nodes", "2", "--dry-run", "--", "--workdir", "w"], "--gpus-per-node must be a positive integer"),
    (["process", "--num-processes", "2", "--process-id", "0", "--dry-run", "--", "--workdir", "w"],
     "--coordinator HOST:PORT is required"),
    (["process", "--coordinator", "h:1", "--num-processes", "2", "--process-id", "2", "--dry-run", "--",
      "--workdir", "w"], "--process-id must be 0 to 1, got '2'"),
    (["local", "--nodes", "2", "--dry-run", "--", "--workdir", "w"], "--nodes is not an option of mode local"),
])
def test_gpu_errors_before_any_command(args, message):
    done = _launch("gpu.sh", *args)
    assert done.returncode == 2 and message in done.stderr and "+ " not in done.stdout


def test_a_missing_launcher_is_named_without_a_dry_run(tmp_path):
    done = subprocess.run(["bash", str(LAUNCH / "gpu.sh"), "slurm", "--nodes", "1", "--gpus-per-node", "1", "--",
                           "--workdir", "w"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert done.returncode == 2 and "'srun' is not on PATH" in done.stderr and done.stdout == ""
