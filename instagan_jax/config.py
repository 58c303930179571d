"""Run configurations as data: JSON files in `instagan_jax/configs/`, overridable with `key=value`.

    config = load_config("default", ["train.batch_size=4", "model.ngf=32"])

A config has six sections (model, loss, data, train, log, and a name); unknown keys are errors that
name the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from instagan_jax.losses import LossWeights
from instagan_jax.models import ModelConfig

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: installed with the code


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where examples come from (`data.open_sources(kind, **options)`) and how they are prepared."""

    kind: str = "shapes"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    load_size: tuple[int, int] | None = None  # (H, W) resize; None keeps the record's size
    crop_size: tuple[int, int] = (64, 64)  # (H, W) random crop = the training image size
    flip: bool = True
    num_threads: int = 2
    num_workers: int = 0
    skip_bad: bool = False


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation: the reference's defaults (REFERENCE.md §3, §5)."""

    batch_size: int = 1  # global batch, split over all devices
    ins_max: int = 4
    ins_per: int = 2
    pool_size: int = 50
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    eps: float = 1e-8
    niter: int = 100  # epochs at the initial learning rate
    niter_decay: int = 100  # epochs of linear decay to zero
    epoch_count: int = 1
    steps: int | None = None  # iterations to run; None = (niter + niter_decay) epochs
    seed: int = 0
    distributed: bool = False  # call jax.distributed.initialize() (multi-host)
    unroll_groups: bool | str = "auto"  # unroll the scan over mask groups; auto = on CPU only


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """How often to report, draw samples and checkpoint (in iterations)."""

    log_every: int = 10
    sample_every: int = 100
    checkpoint_every: int = 500
    keep_checkpoints: int = 3


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run."""

    name: str = "default"
    model: ModelConfig = ModelConfig()
    loss: LossWeights = LossWeights()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    log: LogConfig = LogConfig()

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# Fields that may differ between a checkpoint and the run resuming from it.
RESUMABLE_CHANGES = frozenset({"train.steps", "train.distributed", "train.unroll_groups", "data.num_threads", "data.num_workers",
                               "log.log_every", "log.sample_every", "log.checkpoint_every",
                               "log.keep_checkpoints", "name"})


def _build(cls: type, values: dict[str, Any], where: str):
    """A dataclass from a dict, recursively; unknown keys are an error naming them."""
    if not isinstance(values, dict):
        raise ValueError(f"config section {where or 'top level'} must be an object, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key(s) {[f'{where}{k}' for k in unknown]}; known: {sorted(fields)}")
    kwargs, defaults = {}, cls()
    for name, value in values.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, f"{where}{name}.")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> Config:
    """A Config from nested dicts (missing keys take their defaults)."""
    return _build(Config, values, "")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare string


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides (value parsed as JSON, else taken as a string)."""
    values = json.loads(json.dumps(values))
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        path, text = item.split("=", 1)
        keys = path.strip().split(".")
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {key!r} is not a section")
        node[keys[-1]] = _parse_value(text)
    return values


def resolve_config_path(name_or_path: str) -> Path:
    """A config file: a path, or the name of a file in CONFIG_DIR (without .json)."""
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        return path
    candidate = CONFIG_DIR / f"{name_or_path}.json"
    if not candidate.is_file():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
        raise FileNotFoundError(f"no config named {name_or_path!r}; built-in configs: {known}")
    return candidate


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """Read a config file (by name or path) and apply overrides."""
    path = resolve_config_path(name_or_path)
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from err
    return config_from_dict(apply_overrides(values, overrides or []))


def differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> dict[str, tuple]:
    """Flattened `key: (saved, current)` for every differing leaf of two config dicts."""
    out = {}
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict) and key != "options":
            out.update(differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = (a, b)
    return out
