"""The record an output of `instagan prepare` keeps of the options it was made with, so that a
rerun reuses the output only when they are the same, and never serves or mixes in other data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from instagan_jax.data.errors import DataError

#: File name of the record, in the folder (format folder) or the TFDS version folder (format tfds).
MANIFEST = "instagan_prepare.json"


def as_json(value: Any) -> Any:
    """`value` as plain JSON values (tuples as lists, paths as absolute strings)."""
    if isinstance(value, os.PathLike):
        return str(Path(value).resolve())
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): as_json(v) for k, v in value.items()}
    return value


def option_differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """'key: <before> there, <now> now' for every option whose value differs."""
    return [f"{key}: {before.get(key)!r} there, {now.get(key)!r} now"
            for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]


def reusable_manifest(folder: Path, options: dict[str, Any], occupied: bool) -> dict[str, Any] | None:
    """The manifest of `folder` if it holds data prepared with `options`; None if it holds none
    (`occupied` False); `DataError` naming the differing options if it holds other data."""
    path = folder / MANIFEST
    if not path.is_file():
        if occupied:
            raise DataError(f"{folder} already holds data, but no {MANIFEST} saying how it was made; "
                            "remove it or choose another --out")
        return None
    try:
        manifest = json.loads(path.read_text())
        before = manifest["options"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"cannot read {path}: {err!r}; remove {folder} or choose another --out") from err
    differences = option_differences(before, as_json(options))
    if differences:
        raise DataError(f"{folder} was prepared with other options ({'; '.join(differences)}); "
                        "remove it or choose another --out (format tfds: or --name)")
    return manifest


def write_manifest(folder: Path, options: dict[str, Any], counts: dict[str, int], dropped: dict[str, str]) -> None:
    """Record `options`, the images written and what was dropped per split in `folder` (atomically)."""
    path = folder / MANIFEST
    partial = path.with_name(f".{MANIFEST}.partial")
    content = {"options": as_json(options), "counts": counts, "dropped": dropped}
    partial.write_text(json.dumps(content, indent=2, sort_keys=True))
    partial.replace(path)
