"""Compare our networks with a PyTorch reference fixture (`instagan parity FIXTURE.npz`).

A fixture is an `.npz` of reference arrays (NCHW) with a `.json` beside it (layout in
`../shared/parity/reference_small.json`): initial weights `init/<net>/<key>`, inputs `input/*`,
standalone forwards `fwd/*` and the sequential inference path `test/*`. The architecture is read
off the weights; `ins_per` and the tolerances come from the JSON when present.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from instagan_jax import convert, instances, losses
from instagan_jax.inference import translate
from instagan_jax.models import ModelConfig, SetDiscriminator, SetGenerator, abstract, apply

DEFAULT_TOLERANCES = {
    "outputs": ("atol", 1e-4),
    "losses": ("rtol", 1e-4),
    "gradients": ("rtol", 1e-3),
    "updated": ("atol", 1e-6),
}
_TOLERANCE_WORDS = {"image": "outputs", "output": "outputs", "loss": "losses",
                    "gradient": "gradients", "adam": "updated", "updated": "updated"}


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison of an array of ours with the reference's."""

    name: str
    kind: str
    mode: str
    tolerance: float
    error: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.error)) and self.error <= self.tolerance


@dataclasses.dataclass(frozen=True)
class Fixture:
    """A reference fixture: arrays, JSON metadata and what follows from them."""

    arrays: Mapping[str, np.ndarray]
    meta: Mapping
    config: ModelConfig
    ins_max: int
    ins_per: int
    tolerances: Mapping[str, tuple[str, float]]


def parse_tolerances(text: str) -> dict[str, tuple[str, float]]:
    """Read 'atol 1e-4 on images/..., rtol 1e-3 on gradients, ...' into {kind: (mode, value)}."""
    found = dict(DEFAULT_TOLERANCES)
    for mode, value, subject in re.findall(r"\b(atol|rtol)\s+([0-9.]+e-?\d+|[0-9.]+)\s+on\s+([^,;(]+)", text):
        subject = subject.lower()
        for word, kind in _TOLERANCE_WORDS.items():
            if word in subject:
                found[kind] = (mode, float(value))
                break
    return found


def _reference_state_dict(arrays: Mapping[str, np.ndarray], net: str) -> dict[str, np.ndarray]:
    prefix = f"init/{net}/"
    return {k[len(prefix):]: arrays[k] for k in arrays if k.startswith(prefix)}


def _config_from_weights(arrays: Mapping[str, np.ndarray]) -> ModelConfig:
    stem = arrays["init/G_A/encoder_img.1.weight"]
    blocks = {int(m.group(1)) for k in arrays
              if (m := re.match(r"init/G_A/encoder_img\.(\d+)\.conv_block\.", k))}
    ndf = arrays["init/D_A/feature_img.0.module.weight_bar"].shape[0]
    return ModelConfig(ngf=stem.shape[0], ndf=ndf, n_blocks=len(blocks), image_channels=stem.shape[1])


def load_fixture(path: str | Path) -> Fixture:
    """Read FIXTURE.npz and FIXTURE.json (optional) and derive the configuration."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parity fixture not found: {path}")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    for key in ("init/G_A/encoder_img.1.weight", "init/D_A/feature_img.0.module.weight_bar",
                "input/A_img", "input/A_segs_raw"):
        if key not in arrays:
            raise KeyError(f"{path}: not a reference fixture (no array {key!r})")
    json_path = path.with_suffix(".json")
    meta = json.loads(json_path.read_text()) if json_path.is_file() else {}
    ins_max = arrays["input/A_segs_selected"].shape[1] if "input/A_segs_selected" in arrays \
        else int(meta.get("config", {}).get("ins_max", 4))
    ins_per = int(meta.get("config", {}).get("ins_per", 0)) or (
        arrays["train/step0/real_A_seg_sng"].shape[1] if "train/step0/real_A_seg_sng" in arrays else 2)
    return Fixture(arrays, meta, _config_from_weights(arrays), ins_max, ins_per,
                   parse_tolerances(meta.get("tolerance_guidance", "")))


def import_network(fixture: Fixture, name: str) -> nnx.Module:
    """A fresh network (G_A, G_B, D_A or D_B) holding the fixture's initial weights."""
    cls = SetGenerator if name.startswith("G") else SetDiscriminator
    net = abstract(cls, fixture.config)
    convert.load_reference(net, _reference_state_dict(fixture.arrays, name))
    return net


def to_nhwc(x: np.ndarray) -> jnp.ndarray:
    """NCHW -> NHWC."""
    return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))


def to_nchw(x) -> np.ndarray:
    """NHWC -> NCHW."""
    return np.asarray(x).transpose(0, 3, 1, 2)


def split_set(x: np.ndarray, image_channels: int):
    """A reference `cat([img, masks])` NCHW tensor -> image (B,H,W,C), masks (B,K,H,W,1)."""
    return to_nhwc(x[:, :image_channels]), jnp.asarray(x[:, image_channels:])[..., None]


def join_set(img, masks) -> np.ndarray:
    """Image (B,H,W,C) and masks (B,K,H,W,1) -> the reference's NCHW `cat([img, masks])`."""
    return np.concatenate([to_nchw(img), np.asarray(masks)[..., 0]], axis=1)


def _max_error(mode: str, ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        return float("inf")
    diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    if mode == "rtol":
        return diff / max(float(np.max(np.abs(theirs))), 1e-12)
    return diff


class _Checker:
    """Collects checks against the fixture, only for keys the fixture has."""

    def __init__(self, fixture: Fixture):
        self.fixture = fixture
        self.checks: list[Check] = []

    def compare(self, key: str, kind: str, ours, name: str | None = None) -> None:
        if key not in self.fixture.arrays:
            return
        mode, tolerance = self.fixture.tolerances[kind]
        error = _max_error(mode, ours, self.fixture.arrays[key])
        self.checks.append(Check(name or key, kind, mode, tolerance, error))


def _selected_sets(fixture: Fixture) -> dict[str, tuple]:
    """Per domain: image, the ins_max selected masks and their validity, from the raw slots."""
    sets = {}
    for domain in ("A", "B"):
        raw = jnp.asarray(fixture.arrays[f"input/{domain}_segs_raw"])[..., None]
        masks, valid = instances.select_largest(raw, fixture.ins_max)
        sets[domain] = (to_nhwc(fixture.arrays[f"input/{domain}_img"]), masks, valid)
    return sets


def _input_checks(checker: _Checker, sets: dict[str, tuple]) -> None:
    for domain, (_, masks, _) in sets.items():
        checker.compare(f"input/{domain}_segs_selected", "outputs", np.asarray(masks)[..., 0])
        checker.compare(f"input/{domain}_seg_merged", "outputs", to_nchw(losses.merge_masks(masks)))


def _round_trip_checks(checker: _Checker, fixture: Fixture) -> None:
    """Our state written back in reference layout equals the imported state_dict exactly."""
    for name in ("G_A", "G_B", "D_A", "D_B"):
        ref = _reference_state_dict(fixture.arrays, name)
        ours = convert.to_reference(import_network(fixture, name))
        same_keys = list(ours) == list(ref)
        error = max(float(np.max(np.abs(ours[k] - ref[k]))) for k in ref) if same_keys else float("inf")
        checker.checks.append(Check(f"state_dict round trip {name}", "exact", "atol", 0.0, error))


def _forward_checks(checker: _Checker, fixture: Fixture, sets: dict[str, tuple]) -> None:
    """Standalone forwards from the initial weights: G on the full set, D on real and fake sets."""
    c = fixture.config.image_channels
    fakes = {}
    for gen, domain in (("G_A", "A"), ("G_B", "B")):
        img, masks, valid = sets[domain]
        fakes[gen] = apply(import_network(fixture, gen), img, masks, valid)
        checker.compare(f"fwd/{gen}_full", "outputs", join_set(*fakes[gen]))
    for disc, real_domain, gen in (("D_A", "B", "G_A"), ("D_B", "A", "G_B")):
        img, masks, valid = sets[real_domain]
        net = import_network(fixture, disc)
        checker.compare(f"fwd/{disc}_real", "outputs", to_nchw(apply(net, img, masks, valid)))
        after = convert.to_reference(net)
        prefix = f"fwd/{disc}_real_after/"
        for key in [k for k in fixture.arrays if k.startswith(prefix)]:
            checker.compare(key, "outputs", after[key[len(prefix):]])
        fake_img, fake_masks = fakes[gen]
        fake_scores = apply(import_network(fixture, disc), fake_img, fake_masks, instances.mask_valid(fake_masks))
        checker.compare(f"fwd/{disc}_fake", "outputs", to_nchw(fake_scores))
    for disc in ("D_A", "D_B"):
        key = f"fwd/{disc}_batch2_in"
        if key in fixture.arrays:
            img, masks = split_set(fixture.arrays[key], c)
            net = import_network(fixture, disc)
            checker.compare(f"fwd/{disc}_batch2_out", "outputs",
                            to_nchw(apply(net, img, masks, instances.batchwide_valid(masks))),
                            name=f"fwd/{disc}_batch2_out (reference's batch-wide slot rule)")


def _stale_union(rec_masks, valid, ins_per: int) -> np.ndarray:
    """The reference's rec_X_seg: a skipped group re-appends the last run group's reconstruction."""
    groups, group_valid = instances.split_groups(rec_masks, valid, ins_per)
    kept, last = [], None
    for group, runs in zip(groups, np.asarray(jnp.any(group_valid, axis=(1, 2)))):
        last = group if runs or last is None else last
        kept.append(last)
    return to_nchw(losses.merge_masks(jnp.concatenate(kept, axis=1)))


def _inference_checks(checker: _Checker, fixture: Fixture, sets: dict[str, tuple]) -> None:
    """The reference's model.test(): sequential translation of both domains from the initial weights."""
    nets = {name: import_network(fixture, name) for name in ("G_A", "G_B")}
    for src, dst, gen, back in (("A", "B", "G_A", "G_B"), ("B", "A", "G_B", "G_A")):
        img, masks, valid = sets[src]
        out = translate(nets[gen], nets[back], img, masks, ins_per=fixture.ins_per, ins_max=fixture.ins_max)
        checker.compare(f"test/fake_{dst}_img", "outputs", to_nchw(out.fake_img))
        checker.compare(f"test/rec_{src}_img", "outputs", to_nchw(out.rec_img))
        checker.compare(f"test/fake_{dst}_seg", "outputs", to_nchw(out.fake_union))
        checker.compare(f"test/fake_{dst}_seg_mul", "outputs", np.asarray(out.fake_masks)[..., 0])
        checker.compare(f"test/rec_{src}_seg", "outputs", _stale_union(out.rec_masks, valid, fixture.ins_per),
                        name=f"test/rec_{src}_seg (reference's stale re-append of skipped groups)")


def run_parity(path: str | Path) -> list[Check]:
    """Every check of the fixture that this version of the library covers."""
    fixture = load_fixture(path)
    checker = _Checker(fixture)
    sets = _selected_sets(fixture)
    _input_checks(checker, sets)
    _round_trip_checks(checker, fixture)
    _forward_checks(checker, fixture, sets)
    _inference_checks(checker, fixture, sets)
    return checker.checks


def format_report(checks: list[Check]) -> str:
    """A table of checks and the closing `parity: P/N checks within tolerance` line."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  {'kind':<9} {'max error':>11}  {'tolerance':>14}  result",
             "-" * (width + 50)]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {c.kind:<9} {c.error:>11.3e}  {c.mode} {c.tolerance:>9.1e}  "
                     f"{'ok' if c.passed else 'FAIL'}")
    by_kind: dict[str, float] = {}
    for c in checks:
        by_kind[c.kind] = max(by_kind.get(c.kind, 0.0), c.error)
    lines.append("largest error per kind: " + ", ".join(f"{k} {v:.3e}" for k, v in by_kind.items()))
    passed = sum(c.passed for c in checks)
    lines.append(f"parity: {passed}/{len(checks)} checks within tolerance")
    return "\n".join(lines)
