"""Checking a data source's options: the required ones are there, no unknown one is left."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any


def required(options: dict[str, Any], key: str) -> Any:
    """Pop option `key`; ValueError if it is missing."""
    if key not in options:
        raise ValueError(f"data option {key!r} is required")
    return options.pop(key)


def no_more(kind: str, options: dict[str, Any], known: Iterable[str] = ()) -> None:
    """ValueError naming the options left over (unknown to data kind `kind`) and the `known` ones."""
    if options:
        known = sorted(known)
        listed = f" (its options: {', '.join(known)})" if known else ""
        raise ValueError(f"unknown option(s) for data kind {kind!r}: {', '.join(f'data.options.{k}' for k in sorted(options))}"
                         f"{listed}")


def taken_by(source: Callable, kind: str, options: dict[str, Any], *, also: Iterable[str] = (),
             besides: Iterable[str] = ()) -> dict[str, Any]:
    """`options` after a ValueError naming those that `source`'s keyword parameters (less `besides`, the
    ones the caller passes itself) do not take; `also`: options taken before (listed as known)."""
    besides = set(besides)
    taken = [name for name, p in inspect.signature(source).parameters.items()
             if name not in besides and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    no_more(kind, {key: value for key, value in options.items() if key not in taken}, [*taken, *also])
    return options
