"""The translation methods, side by side, behind one contract (`base.Method`).

    from instagan_jax import methods
    method = methods.get("cyclegan")          # names(): every package under instagan_jax/methods/
    spec = method.make_spec(config, iters_per_epoch)
    state = method.init_state(spec, seed)
    state, metrics, visuals = method.train_step(spec, state, batch)   # pure, jittable

A method is a package `instagan_jax/methods/<name>/` whose `__init__` defines `METHOD`; it is found by
its folder, so adding one touches nothing outside it (docs/ARCHITECTURE.md). `register` adds one at run
time (tests, plugins). Shared layers live in `instagan_jax.nn`, shared evaluation in `instagan_jax.eval`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pkgutil
import warnings
from pathlib import Path

from instagan_jax.config import SECTIONS, Config, apply_overrides, read_values, with_defaults
from instagan_jax.config import config_from_dict as build_config
from instagan_jax.methods.base import (
    DATA_KINDS,
    EvalRequest,
    ImageSpec,
    Method,
    Reference,
    Sections,
    TranslateOptions,
    TranslateRules,
    Translator,
    a_run,
)

__all__ = ["DATA_KINDS", "EvalRequest", "ImageSpec", "Method", "Reference", "Sections", "TranslateOptions",
           "TranslateRules", "Translator", "a_run", "check_translate", "config_from_dict", "get", "load_config",
           "names", "register", "unregister", "upgrade_saved"]

_REGISTERED: dict[str, Method] = {}


@functools.cache
def _packages() -> tuple[str, ...]:
    return tuple(sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.ispkg))


def names() -> tuple[str, ...]:
    """The known methods: the packages here, then those registered at run time."""
    return _packages() + tuple(n for n in _REGISTERED if n not in _packages())


def register(method: Method) -> Method:
    """Make `get(method.name)` return `method` (a method defined outside this package)."""
    if method.name in _packages():
        raise ValueError(f"method {method.name!r} is built in: choose another name")
    _REGISTERED[method.name] = method
    return method


def unregister(name: str) -> None:
    """Undo `register(method)` of the method called `name`."""
    _REGISTERED.pop(name)


def get(name: str) -> Method:
    """The method called `name`; ValueError listing the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _packages():
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name}").METHOD


def _method_of(values: dict) -> Method:
    name = values.get("method", Config.method) if isinstance(values, dict) else Config.method
    if not isinstance(name, str) or name not in names():
        raise ValueError(f"config key method: expected one of {', '.join(names())}, got {name!r}")
    return get(name)


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _owners(section: str, key: str) -> list[str]:
    """The titles of the methods whose `section` has `key`."""
    return [m.title for m in map(get, names()) if key in _fields(getattr(m.sections, section))]


def _check_foreign_keys(method: Method, values: dict) -> None:
    """ValueError naming a key of another method's section (clearer than 'unknown key')."""
    for section in SECTIONS:
        given = values.get(section)
        for key in sorted(given) if isinstance(given, dict) else ():
            if key not in _fields(getattr(method.sections, section)) and (owners := _owners(section, key)):
                raise ValueError(f"config key {section}.{key} is {' and '.join(owners)}'s, not {method.title}'s "
                                 f"(a {method.name} config's {section} keys: "
                                 f"{sorted(_fields(getattr(method.sections, section)))})")


def config_from_dict(values: dict) -> Config:
    """A checked Config from nested dicts (missing keys at their defaults): its method a known one, its
    sections that method's (`Method.sections`)."""
    method = _method_of(values)
    _check_foreign_keys(method, values)
    return build_config(values, method.sections.as_dict())


def load_config(name_or_path: str, overrides: list[str] | None = None) -> Config:
    """Read a config file (a name in instagan_jax/configs/ or a path), apply `key=value` overrides, check it.

    An override that changes `method` drops the file's keys that the new method's sections lack (they
    belong to the old method), as one that changes `data.kind` drops the file's data options.
    """
    base = read_values(name_or_path)
    values = apply_overrides(base, overrides or [])
    if _method_of(values) is not _method_of(base):
        given, sections = apply_overrides({}, overrides or []), _method_of(values).sections
        for section in (name for name in SECTIONS if isinstance(values.get(name), dict)):
            keep = _fields(getattr(sections, section)) | set(given.get(section) or {})
            values[section] = {k: v for k, v in values[section].items() if k in keep}
    return config_from_dict(values)


def _legacy_default(section: str, key: str, value) -> bool:
    """Whether `value` is what some method's `section.key` defaults to: what a checkpoint written with the
    one union schema of earlier versions holds for a key its method never read."""
    for method in map(get, names()):
        cls = getattr(method.sections, section)
        if key in _fields(cls) and getattr(cls(), key) == value:
            return True
    return False


def upgrade_saved(saved: dict) -> dict:
    """A config dict saved with a checkpoint (by any version) as its method's sections take it: keys added
    since at their defaults; a key that the method's sections lack dropped (earlier versions saved every
    method's keys in one schema; the method never read the others). A dropped key that held another value
    than its default is named in a warning: setting it had no effect on the run."""
    method = _method_of(saved)
    filtered, ignored = dict(saved), []
    for section in SECTIONS:
        fields = _fields(getattr(method.sections, section))
        given = saved.get(section) if isinstance(saved.get(section), dict) else {}
        filtered[section] = {key: value for key, value in given.items() if key in fields}
        ignored += [f"{section}.{key} = {value!r}" for key, value in given.items()
                    if key not in fields and not _legacy_default(section, key, value)]
    if ignored:
        warnings.warn(f"the checkpoint's config sets {', '.join(ignored)}, which {a_run(method.title)} never read "
                      "(an earlier version saved every method's keys): dropped", stacklevel=2)
    defaults = Config(model=method.sections.model(), loss=method.sections.loss(), train=method.sections.train())
    return with_defaults(filtered, defaults.to_dict())


def _takers(flag: str) -> str:
    """'a ... run' of the methods whose translate rules take `flag`."""
    return a_run([m.title for m in map(get, names()) if getattr(m.translate, flag)] or "no method's")


def check_translate(method: Method, direction: str, *, ins_per: int | None = None, exemplar: bool = False,
                    user_mask: bool = False, size: tuple[int, int] | None = None) -> None:
    """ValueError naming the first `instagan translate` option that `method`'s rules refuse."""
    rules, run = method.translate, a_run(method.title)
    if direction not in rules.directions:
        shown = " and ".join(d.replace("to", " -> ") for d in rules.directions)
        raise ValueError(f"{run} translates {shown} only (--direction {rules.directions[0]})")
    if rules.exemplar and not exemplar:
        raise ValueError(f"{run} translates with an exemplar: give --exemplar IMAGE")
    for flag, given in (("exemplar", exemplar), ("user_mask", user_mask)):
        if given and not getattr(rules, flag):
            raise ValueError(f"--{flag.replace('_', '-')} goes with {_takers(flag)}, not {run}")
    if ins_per is not None and (ins_per < 1 or not rules.ins_per):
        raise ValueError(f"--ins-per must be at least 1 and goes with {_takers('ins_per')}, got {ins_per} "
                         f"for {run}")
    if size is not None:
        check_size(size, rules.size_multiple)


def check_size(size: tuple[int, int], multiple: int = 4) -> tuple[int, int]:
    """The network size (H, W); `ValueError` unless both are positive multiples of `multiple` (the
    method's `translate.size_multiple`: 4 for two stride-2 levels)."""
    if len(size) != 2 or any(s < multiple or s % multiple for s in size):
        raise ValueError(f"size must be two positive multiples of {multiple} (H W), got {' '.join(map(str, size))}")
    return tuple(size)
