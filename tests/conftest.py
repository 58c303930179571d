"""Shared test fixtures: tiny model configs and the location of ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest

from instagan_jax.models import ModelConfig

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REFERENCE_SMALL = SHARED / "parity" / "reference_small.npz"
REFERENCE_SMALL_F64 = SHARED / "parity" / "reference_small_f64.npz"

TINY = ModelConfig(ngf=4, ndf=4, n_blocks=1)


def require_shared(path: Path) -> Path:
    """Skip the test with a clear message where ../shared (or the file in it) is absent."""
    if not path.exists():
        pytest.skip(f"{path} not found: shared data/fixtures live in ../shared beside the project")
    return path


@pytest.fixture(scope="session")
def reference_small() -> Path:
    """The reference fixture for the small configuration (skips where ../shared is absent)."""
    return require_shared(REFERENCE_SMALL)


@pytest.fixture(scope="session")
def reference_small_f64() -> Path:
    """The float64 reference fixture for the small configuration (skips where ../shared is absent)."""
    return require_shared(REFERENCE_SMALL_F64)
