"""Shared test fixtures: tiny model configs and the location of ../shared."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from instagan_jax.nn.build import ResnetModel

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
REFERENCE_SMALL = SHARED / "parity" / "reference_small.npz"
REFERENCE_SMALL_F64 = SHARED / "parity" / "reference_small_f64.npz"

TINY = ResnetModel(ngf=4, ndf=4, n_blocks=1)
# `--set` values that shrink the built-in `default` config to seconds of compiling (32x32, one block).
TINY_DEFAULT_OVERRIDES = ["model.ngf=4", "model.ndf=4", "model.n_blocks=1", "data.options.size=4",
                          "data.options.height=36", "data.options.width=36", "data.crop_size=[32,32]",
                          "train.ins_max=2", "train.ins_per=2"]


def set_flags(overrides: list[str]) -> list[str]:
    """`--set KEY=VALUE` for each override."""
    return [arg for item in overrides for arg in ("--set", item)]


def require_shared(path: Path) -> Path:
    """Skip the test with a clear message where ../shared (or the file in it) is absent."""
    if not path.exists():
        pytest.skip(f"{path} not found: shared data/fixtures live in ../shared beside the project")
    return path


def copy_source(folder: Path) -> Path:
    """`folder` with what a build of the package reads (pyproject.toml, README.md, instagan_jax/, data_prep/):
    installing from the copy leaves no build files in the checkout."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, folder / name)
    for package in ("instagan_jax", "data_prep"):
        shutil.copytree(ROOT / package, folder / package, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


@pytest.fixture(scope="session")
def reference_small() -> Path:
    """The reference fixture for the small configuration (skips where ../shared is absent)."""
    return require_shared(REFERENCE_SMALL)


@pytest.fixture(scope="session")
def reference_small_f64() -> Path:
    """The float64 reference fixture for the small configuration (skips where ../shared is absent)."""
    return require_shared(REFERENCE_SMALL_F64)


TINY_RUN = {
    "name": "tiny",
    "model": {"ngf": 4, "ndf": 4, "n_blocks": 1},
    "data": {"kind": "shapes", "options": {"size": 20, "height": 36, "width": 36, "max_instances": 3},
             "crop_size": [32, 32], "num_threads": 1},
    "train": {"batch_size": 2, "ins_max": 2, "ins_per": 1, "pool_size": 2, "niter": 1, "niter_decay": 2,
              "unroll_groups": False},
    "log": {"log_every": 1, "sample_every": 2, "checkpoint_every": 2, "keep_checkpoints": 5},
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A workdir of a tiny shapes model trained for 3 iterations (checkpoints at 2 and 3), shared by the
    tests of the commands that use a trained model. Read it; do not write into it."""
    from instagan_jax.loop import train
    from instagan_jax.methods import config_from_dict

    workdir = tmp_path_factory.mktemp("tiny_run") / "run"
    train(config_from_dict(TINY_RUN), workdir, steps=3, progress=False)
    return workdir
