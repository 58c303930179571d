"""A non-editable install (`pip install .`) finds its built-in configs: they are package data, not
files beside the source tree. The package is installed with `--no-deps --target` (the dependencies
are this environment's) and run from another folder with only the install on PYTHONPATH. The wheel
with its dependencies in a fresh venv: tests/test_wheel.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_DEFAULT_OVERRIDES, copy_source, set_flags


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder with the package installed from a copy of the source (so no build files land in it)."""
    root = tmp_path_factory.mktemp("install")
    source = copy_source(root / "source")
    target = root / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return target


def _run_installed(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target), "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_installed_train_finds_the_default_config(installed, tmp_path):
    where = _run_installed(installed, tmp_path, sys.executable, "-c", "import instagan_jax; print(instagan_jax.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout + where.stderr
    done = _run_installed(installed, tmp_path, str(installed / "bin" / "instagan"), "train", "--config", "default",
                          "--workdir", "run", "--steps", "0", "--no-progress", *set_flags(TINY_DEFAULT_OVERRIDES))
    assert done.returncode == 0, done.stderr[-4000:]  # config, data, init and a checkpoint; no compile
    assert json.loads((tmp_path / "run" / "config.json").read_text())["name"] == "default"
    assert "now at iteration 0" in done.stdout and (tmp_path / "run" / "checkpoints" / "0").is_dir()
    assert "it/s" not in done.stdout  # no iteration ran: no speed to report
