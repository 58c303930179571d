"""What every method's parity check shares: tolerances, checks, a checker over fixture arrays, the report."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from instagan_jax.config import TrainConfig
from instagan_jax.nn.losses import LossWeights

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
    informational: bool = False  # reported, not pass/fail (float32 values after noise-driven Adam steps)

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.error)) and self.error <= self.tolerance


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


def read_fixture(path: str | Path, required: tuple[str, ...], kind: str) -> tuple[dict[str, np.ndarray], dict]:
    """A fixture's arrays and its JSON metadata (empty without a JSON beside it); FileNotFoundError or
    KeyError naming the file when it is missing or lacks one of the `required` arrays of a `kind` fixture."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parity fixture not found: {path}")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    for key in required:
        if key not in arrays:
            raise KeyError(f"{path}: not a {kind} fixture (no array {key!r})")
    json_path = path.with_suffix(".json")
    return arrays, json.loads(json_path.read_text()) if json_path.is_file() else {}


def state_dict_under(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The arrays under `prefix` (e.g. `init/G_A/`), keyed without it: a reference state_dict."""
    return {key: arrays[prefix + key] for key in keys_under(arrays, prefix)}


def reference_train_config(meta: Mapping, section: type = TrainConfig, **fields) -> TrainConfig:
    """A fixture's Adam and learning-rate options (its JSON's `adam` and `opt`) as the method's train
    `section`; `fields` set the rest (e.g. ins_max)."""
    opt, adam = meta.get("opt", {}), meta.get("adam", {})
    betas = adam.get("betas", [opt.get("beta1", 0.5), 0.999])
    return section(lr=float(adam.get("lr", opt.get("lr", 2e-4))), beta1=float(betas[0]), beta2=float(betas[1]),
                   eps=float(adam.get("eps", 1e-8)), niter=int(opt.get("niter", 100)),
                   niter_decay=int(opt.get("niter_decay", 100)), epoch_count=int(opt.get("epoch_count", 1)),
                   pool_size=int(opt.get("pool_size", 50)), **fields)


def reference_loss_weights(meta: Mapping, section: type) -> LossWeights:
    """A fixture's lambdas (its JSON's `opt`; the reference's `lambda_identity` is our `lambda_idt`) as the
    method's loss `section` (the lambdas it has)."""
    opt = meta.get("opt", {})
    names = {"lambda_A": "lambda_A", "lambda_B": "lambda_B", "lambda_idt": "lambda_idt",
             "lambda_identity": "lambda_idt", "lambda_ctx": "lambda_ctx", "lambda_L1": "lambda_L1"}
    fields = {f.name for f in dataclasses.fields(section)}
    return section(**{ours: float(opt[theirs]) for theirs, ours in names.items() if theirs in opt and ours in fields})


def to_nhwc(x: np.ndarray) -> jnp.ndarray:
    """NCHW -> NHWC."""
    return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))


def to_nchw(x) -> np.ndarray:
    """NHWC -> NCHW."""
    return np.asarray(x).transpose(0, 3, 1, 2)


def max_error(mode: str, ours, theirs, scale: float | None = None) -> float:
    """Largest absolute difference; for rtol divided by `scale` (default: the largest |theirs|)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        return float("inf")
    diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    if mode == "rtol":
        return diff / max(float(np.max(np.abs(theirs))) if scale is None else scale, 1e-12)
    return diff


def keys_under(arrays: Mapping[str, np.ndarray], prefix: str) -> list[str]:
    """The fixture's array names under `prefix`, without it."""
    return [k[len(prefix):] for k in arrays if k.startswith(prefix)]


class Checker:
    """Collects checks against a fixture's arrays, only for keys the fixture has."""

    def __init__(self, arrays: Mapping[str, np.ndarray], tolerances: Mapping[str, tuple[str, float]]):
        self.arrays, self.tolerances = arrays, tolerances
        self.checks: list[Check] = []
        self.notes: list[str] = []

    def add(self, name: str, kind: str, error: float, informational: bool = False) -> None:
        mode, tolerance = self.tolerances[kind]
        self.checks.append(Check(name, kind, mode, tolerance, error, informational))

    def compare(self, key: str, kind: str, ours, name: str | None = None, informational: bool = False) -> None:
        if key not in self.arrays:
            return
        mode, _ = self.tolerances[kind]
        self.add(name or key, kind, max_error(mode, ours, self.arrays[key]), informational)

    def compare_many(self, prefix: str, kind: str, ours: Mapping[str, np.ndarray],
                     skip: frozenset[str] = frozenset(), label: str = "tensors", informational: bool = False,
                     exempt: Mapping[str, np.ndarray] | None = None, scale: float | None = None) -> None:
        """One check over every `prefix<key>` array of the fixture (each tensor judged on its own;
        rtol relative to `scale` when given).

        `exempt[key]`, a boolean array, leaves those elements out of the comparison.
        """
        keys = [k for k in keys_under(self.arrays, prefix) if k not in skip]
        if not keys:
            return
        mode, _ = self.tolerances[kind]

        def error(k: str) -> float:
            if k not in ours:
                return float("inf")
            theirs, mine = self.arrays[prefix + k], np.asarray(ours[k])
            if exempt is not None and k in exempt and mine.shape == theirs.shape:
                return max_error(mode, mine[~exempt[k]], theirs[~exempt[k]], scale)
            return max_error(mode, mine, theirs, scale)

        self.add(f"{prefix}* ({len(keys)} {label})", kind, max(error(k) for k in keys), informational)


def format_report(checks: list[Check], notes: list[str] | tuple[str, ...] = ()) -> str:
    """A table of checks, the notes, and the closing `parity: P/N checks within tolerance` line
    (informational comparisons are listed with result `info` and not counted)."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  {'kind':<9} {'max error':>11}  {'tolerance':>14}  result",
             "-" * (width + 50)]
    for c in checks:
        result = "info" if c.informational else ("ok" if c.passed else "FAIL")
        lines.append(f"{c.name:<{width}}  {c.kind:<9} {c.error:>11.3e}  {c.mode} {c.tolerance:>9.1e}  {result}")
    judged = [c for c in checks if not c.informational]
    by_kind: dict[str, float] = {}
    for c in judged:
        by_kind[c.kind] = max(by_kind.get(c.kind, 0.0), c.error)
    lines.append("largest error per kind: " + ", ".join(f"{k} {v:.3e}" for k, v in by_kind.items()))
    lines.extend(f"note: {note}" for note in notes)
    if len(judged) < len(checks):
        lines.append(f"{len(checks) - len(judged)} informational comparison(s), not counted (see the notes)")
    passed = sum(c.passed for c in judged)
    lines.append(f"parity: {passed}/{len(judged)} checks within tolerance")
    return "\n".join(lines)
