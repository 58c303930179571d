"""Run configurations as data: JSON files in `instagan_jax/configs/`, overridable with `key=value`.

    config = methods.load_config("default", ["train.batch_size=4", "model.ngf=32"])

A config names its method (a package of `instagan_jax/methods/`) and has five sections (model, loss, data,
train, log) and a name. This module is the generic shell: the shared fields of each section, overrides and
checks; a method's own `model`, `loss` and `train` fields live in its section classes (`Method.sections`,
subclasses of these), which `methods.load_config` builds. Unknown keys, values of the wrong type (checked
against the dataclass fields' annotations) and values out of range are errors that name the key and the
value, so a typo never silently falls back to a default or fails deep in training.
An override that changes `data.kind` drops the config file's `data.options` (they belong to the old kind).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any

from instagan_jax.nn.build import ModelConfig, ResnetModel
from instagan_jax.nn.losses import LossWeights

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: installed with the code


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where examples come from (`data.open_sources`, `open_paired` or `open_attributes` of kind and options,
    by the method's data) and how they are prepared."""

    kind: str = "shapes"
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    load_size: tuple[int, int] | None = None  # (H, W) resize; None keeps the record's size
    crop_size: tuple[int, int] = (64, 64)  # (H, W) random crop = the training image size
    flip: bool = True
    num_threads: int = 2
    num_workers: int = 0
    skip_bad: bool = False

    def __post_init__(self) -> None:
        if self.load_size is not None and any(c > s for c, s in zip(self.crop_size, self.load_size)):
            raise ValueError(f"config keys data.crop_size {list(self.crop_size)} and data.load_size "
                             f"{list(self.load_size)}: the crop must fit in the resized image")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation, the fields of every method: the reference's defaults (REFERENCE.md §3, §5). A method's
    own train section (`Method.sections`) subclasses it with its fields."""

    batch_size: int = 1  # global batch, split over all devices
    ins_max: int = 4  # the largest instances of each record kept (translated by InstaGAN, scored by eval)
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
    d_lr_mult: float = 1.0  # the discriminators' learning rate = lr * this (1: the reference's)


@dataclasses.dataclass(frozen=True)
class LogConfig:
    """How often to report, draw samples and checkpoint (in iterations)."""

    log_every: int = 10
    sample_every: int = 100
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    checkpoint_dir: str = ""  # "" = <workdir>/checkpoints; or a folder, or a URL orbax writes to (gs://...)


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole run. `model`, `loss` and `train` hold the method's own sections (subclasses of these)."""

    name: str = "default"
    method: str = "instagan"  # a package of instagan_jax/methods/ (`methods.names()`)
    model: ModelConfig = ResnetModel()  # the default method's (InstaGAN) section
    loss: LossWeights = LossWeights()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    log: LogConfig = LogConfig()

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


# Fields that may differ between a checkpoint and the run resuming from it.
# model.compute_dtype: the checkpointed state (parameters, Adam, u, v) is float32 under either.
RESUMABLE_CHANGES = frozenset({"model.compute_dtype", "model.instance_layout", "model.pack_fraction",
                               "train.steps", "train.distributed", "train.unroll_groups",
                               "data.num_threads", "data.num_workers",
                               "log.log_every", "log.sample_every", "log.checkpoint_every",
                               "log.keep_checkpoints", "log.checkpoint_dir", "name"})


# Smallest allowed value of the shared numeric fields (a key absent here may take any value of its type;
# a method's own fields say theirs with `at_least`). Every loss weight is at least 0.
MINIMUMS = {
    "model.ngf": 1, "model.ndf": 1, "model.n_blocks": 0, "model.image_channels": 1,
    "data.num_threads": 0, "data.num_workers": 0,
    "train.batch_size": 1, "train.ins_max": 1, "train.pool_size": 0, "train.lr": 0.0,
    "train.beta1": 0.0, "train.beta2": 0.0, "train.eps": 0.0, "train.niter": 0, "train.niter_decay": 0,
    "train.epoch_count": 1, "train.steps": 0, "train.seed": 0, "train.d_lr_mult": 0.0,
    "log.log_every": 1, "log.sample_every": 1, "log.checkpoint_every": 1, "log.keep_checkpoints": 1,
}
SECTIONS = ("model", "loss", "train")  # the sections a method defines its own classes of


def at_least(minimum: float, default: Any) -> Any:
    """A dataclass field of a method's section with its default and smallest allowed value."""
    return dataclasses.field(default=default, metadata={"min": minimum})
_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
               type(None): "null", dict: "an object"}
_PLURAL_NAMES = {int: "integers", float: "numbers"}


def _describe(annotation: Any) -> str:
    """A type annotation in words, e.g. 'a list of 2 integers or null'."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} {_PLURAL_NAMES[args[0]]}"
    return _TYPE_NAMES.get(origin or annotation, str(annotation))


def _convert(value: Any, annotation: Any) -> Any:
    """`value` as `annotation` asks (an integer also as a float, a list as a tuple); TypeError if it is not."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (types.UnionType, typing.Union):
        for option in args:
            with contextlib.suppress(TypeError):
                return _convert(value, option)
    elif origin is tuple and isinstance(value, (list, tuple)) and len(value) == len(args):
        return tuple(_convert(v, a) for v, a in zip(value, args))
    elif annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif annotation in (int, str, dict, type(None)) or origin is dict:
        wanted = origin or annotation
        if isinstance(value, wanted) and not (wanted is int and isinstance(value, bool)):
            return value
    elif annotation is bool and isinstance(value, bool):
        return value
    raise TypeError(f"{value!r} is not {_describe(annotation)}")


def _build(cls: type, values: dict[str, Any], where: str, sections: dict[str, type] | None = None):
    """A dataclass from a dict, recursively (the nested sections named in `sections` as those classes);
    unknown keys and values of the wrong type are errors naming them."""
    if not isinstance(values, dict):
        raise ValueError(f"config section {where.rstrip('.') or 'top level'} must be an object, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown config key(s) {[f'{where}{k}' for k in unknown]}; known: {sorted(fields)}")
    kwargs, defaults, annotations = {}, cls(), typing.get_type_hints(cls)
    for name, value in values.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build((sections or {}).get(name, type(default)), value, f"{where}{name}.")
            continue
        try:
            kwargs[name] = _convert(value, annotations[name])
        except TypeError:
            raise ValueError(f"config key {where}{name}: expected {_describe(annotations[name])}, "
                             f"got {value!r}") from None
    for name, section in (sections or {}).items():
        kwargs.setdefault(name, section())
    return cls(**kwargs)


def _minimum(key: str, field: dataclasses.Field) -> float | None:
    if "min" in field.metadata:
        return field.metadata["min"]
    return 0.0 if key.startswith("loss.") else MINIMUMS.get(key)


def _out_of_range(key: str, value: Any, field: dataclasses.Field) -> str | None:
    """Why a field's value is not allowed, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if (minimum := _minimum(key, field)) is not None and isinstance(value, (int, float)) and value < minimum:
        return f"a value >= {minimum}"
    if key in ("data.crop_size", "data.load_size") and value is not None and min(value) < 1:
        return "two sizes >= 1"
    return None


def validate(config: Config) -> None:
    """Raise ValueError naming the first key whose value is out of range (types are checked on building)."""
    if not config.method:
        raise ValueError("config key method: expected a method's name, got an empty string")
    sections = [(s.name, getattr(config, s.name)) for s in dataclasses.fields(config)]
    for prefix, section in sections:
        for field in dataclasses.fields(section) if dataclasses.is_dataclass(section) else ():
            value, key = getattr(section, field.name), f"{prefix}.{field.name}"
            expected = _out_of_range(key, value, field)
            if expected:
                raise ValueError(f"config key {key}: expected {expected}, got {value!r}")


def config_from_dict(values: dict[str, Any], sections: dict[str, type] | None = None) -> Config:
    """A checked Config from nested dicts (missing keys take their defaults), its `model`, `loss` and
    `train` sections of the classes in `sections` (default: the shared fields only). The commands call
    `methods.config_from_dict`, which takes the sections of the config's method."""
    config = _build(Config, values, "", sections)
    validate(config)
    return config


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare string


def _set_all(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """A copy of `values` with each `section.key=value` override set in turn."""
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


def _data_kind(values: dict[str, Any]) -> Any:
    data = values.get("data")
    return data.get("kind", DataConfig.kind) if isinstance(data, dict) else DataConfig.kind


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides (value parsed as JSON, else taken as a string).

    When they change `data.kind`, the data options are only those the overrides give: the base's
    belong to the other kind.
    """
    result = _set_all(values, overrides)
    if _data_kind(result) != _data_kind(values):
        given = _set_all({}, overrides).get("data", {})
        result["data"]["options"] = given.get("options", {}) if isinstance(given, dict) else {}
    return result


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


def read_values(name_or_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """A config file's values (by name or path) with the overrides applied, not yet checked
    (`methods.load_config` builds them with the method's sections)."""
    path = resolve_config_path(name_or_path)
    try:
        values = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from err
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a config is a JSON object, got {type(values).__name__}")
    return apply_overrides(values, overrides or [])


def with_defaults(saved: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """A saved config dict with the keys added since it was written (e.g. `model.dtype`) at their
    defaults, so that checkpoints of older versions still resume."""
    defaults = Config().to_dict() if defaults is None else defaults
    out = dict(defaults)
    for key, value in saved.items():
        nested = isinstance(value, dict) and isinstance(defaults.get(key), dict) and key != "options"
        out[key] = with_defaults(value, defaults[key]) if nested else value
    return out


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
