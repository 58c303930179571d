"""The wheel works outside the source tree: `python -m build`, `pip install` of the wheel with all its
dependencies into a fresh venv, then, from another folder, `instagan train` (one iteration of the
default config at a tiny size) and `instagan parity` on the float64 InstaGAN fixture."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import (
    REFERENCE_SMALL_F64,
    TINY_DEFAULT_OVERRIDES,
    copy_source,
    require_shared,
    set_flags,
)

pytestmark = pytest.mark.packaging  # minutes: a build, an install from the package index (or pip's cache)


def _run(*args: str | Path, cwd: Path | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    for variable in ("XLA_FLAGS", "PYTHONPATH", "VIRTUAL_ENV"):
        env.pop(variable, None)
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with the wheel built from a copy of this checkout installed in it."""
    pytest.importorskip("build", reason="building the wheel needs the 'build' package (the dev extra has it)")
    root = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "build", "--wheel", "--outdir", root / "dist", copy_source(root / "source"))
    (wheel,) = (root / "dist").glob("instagan_jax-*.whl")
    _run(sys.executable, "-m", "venv", root / "venv")
    _run(root / "venv" / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
    return root / "venv"


def test_the_wheel_holds_the_configs_and_the_tfds_builders(venv):
    listing = _run(venv / "bin" / "python", "-c",
                   "import importlib.resources as r; p = r.files('instagan_jax');"
                   "print(sorted(f.name for f in (p / 'configs').iterdir()));"
                   "print(sorted(f.name for f in (r.files('data_prep') / 'instagan_coco').iterdir()))").stdout
    assert "'default.json'" in listing and "'shp2gir_coco.json'" in listing
    assert "'instagan_coco_dataset_builder.py'" in listing


def test_the_installed_wheel_prepares_a_tfds_data_set(venv, tmp_path):
    done = _run(venv / "bin" / "instagan", "prepare", "shapes", "--num", "2", "--size", "24", "20", "--format",
                "tfds", "--name", "default", "--out", tmp_path / "tfds", cwd=tmp_path)
    assert "instagan_folder/default" in done.stdout + done.stderr
    counted = _run(venv / "bin" / "python", "-c", "from instagan_jax.data import open_sources;"
                   f"a, b = open_sources('tfds', name='instagan_folder/default', data_dir={str(tmp_path / 'tfds')!r});"
                   "print(len(a), len(b), a[0].image.shape)", cwd=tmp_path).stdout
    assert counted.split() == ["2", "2", "(24,", "20,", "3)"]


def test_the_installed_wheel_trains_from_another_folder(venv, tmp_path):
    where = _run(venv / "bin" / "python", "-c", "import instagan_jax; print(instagan_jax.__file__)", cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv)
    done = _run(venv / "bin" / "instagan", "train", "--config", "default", "--workdir", "run", "--steps", "1",
                "--no-progress", *set_flags(TINY_DEFAULT_OVERRIDES), cwd=tmp_path)
    assert "now at iteration 1" in done.stdout and (tmp_path / "run" / "checkpoints" / "1" / "state").is_dir()


def test_the_installed_wheel_passes_parity(venv, tmp_path):
    fixture = require_shared(REFERENCE_SMALL_F64)
    done = _run(venv / "bin" / "instagan", "parity", fixture, cwd=tmp_path)
    passed, total = re.search(r"parity: (\d+)/(\d+) checks within tolerance", done.stdout).groups()
    assert passed == total and int(total) > 40, done.stdout[-2000:]
