"""`instagan parity FIXTURE.npz`: compare a method with the PyTorch reference's recorded outputs.

The method comes from the fixture's JSON (`"model"`: `cycle_gan`, `pix2pix`; InstaGAN's fixtures
have none). Each method's checks reach only its public functions; `common` holds what they share.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from instagan_jax.parity.common import Check

CHECKS_BY_MODEL = {"insta_gan": "instagan", "cycle_gan": "cyclegan", "pix2pix": "pix2pix"}


def fixture_method(path: str | Path) -> str:
    """The method a fixture was recorded with (its JSON's `model`; InstaGAN when absent)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parity fixture not found: {path}")
    meta_path = path.with_suffix(".json")
    model = json.loads(meta_path.read_text()).get("model", "insta_gan") if meta_path.is_file() else "insta_gan"
    if model not in CHECKS_BY_MODEL:
        raise ValueError(f"{meta_path}: model {model!r} has no parity checks; known: {sorted(CHECKS_BY_MODEL)}")
    return CHECKS_BY_MODEL[model]


def run_parity(path: str | Path, notes: list[str] | None = None) -> list[Check]:
    """Every check of the fixture that this version of the library covers (remarks go to `notes`)."""
    module = importlib.import_module(f"instagan_jax.parity.{fixture_method(path)}")
    return module.run_parity(path, notes)
