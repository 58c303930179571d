"""Checking a data source's options: the required ones are there, no unknown one is left."""

from __future__ import annotations

from typing import Any


def required(options: dict[str, Any], key: str) -> Any:
    """Pop option `key`; ValueError if it is missing."""
    if key not in options:
        raise ValueError(f"data option {key!r} is required")
    return options.pop(key)


def no_more(kind: str, options: dict[str, Any]) -> None:
    """ValueError naming the options left over (unknown to data kind `kind`)."""
    if options:
        raise ValueError(f"unknown option(s) for data kind {kind!r}: {sorted(options)}")
