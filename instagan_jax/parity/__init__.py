"""`instagan parity FIXTURE.npz`: compare a method with the PyTorch reference's recorded outputs.

The method is the one whose reference mapping (`Method.reference.model`) names the fixture's model (its
JSON's `"model"`: `cycle_gan`, `pix2pix`; InstaGAN's fixtures have none, `insta_gan`). Its checks live in
the method's package (`Reference.parity`); `common` holds what they share.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from instagan_jax.parity.common import Check

DEFAULT_MODEL = "insta_gan"  # fixtures recorded before the JSON named its model


def fixture_model(path: str | Path) -> str:
    """The reference model a fixture was recorded with (its JSON's `model`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parity fixture not found: {path}")
    meta_path = path.with_suffix(".json")
    return json.loads(meta_path.read_text()).get("model", DEFAULT_MODEL) if meta_path.is_file() else DEFAULT_MODEL


def fixture_method(path: str | Path):
    """The `Method` whose reference recorded a fixture; ValueError naming the known models."""
    from instagan_jax import methods

    model = fixture_model(path)
    known = {m.reference.model: m for m in map(methods.get, methods.names()) if m.reference and m.reference.parity}
    if model not in known:
        raise ValueError(f"{Path(path).with_suffix('.json')}: model {model!r} has no parity checks; "
                         f"known: {sorted(known)}")
    return known[model]


def run_parity(path: str | Path, notes: list[str] | None = None) -> list[Check]:
    """Every check of the fixture that this version of the library covers (remarks go to `notes`)."""
    return importlib.import_module(fixture_method(path).reference.parity).run_parity(path, notes)
