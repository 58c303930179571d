"""Preparation of raw public data sets (COCO, CCP, LV-MHP v1) and of the shapes data set into
encoded records per split, and writing them as a reference-layout folder or a TFDS data set."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from instagan_jax.data.errors import DataError, SkipLog
from instagan_jax.data.folder import write_folder
from instagan_jax.data.records import EncodedRecord

#: Prefix of the folders that outputs are staged in (inside the output folder) until complete.
STAGING = ".staging"


def build_folder_tfds(folder: str | os.PathLike, data_dir: str | os.PathLike, name: str,
                      skip_bad: bool = False) -> Path:
    """Build TFDS `instagan_folder/<name>` in `data_dir` from a reference-layout folder; its path."""
    from data_prep.instagan_folder import Builder, folder_config
    from instagan_jax.data import tfds_data

    builder = Builder(data_dir=os.fspath(data_dir), config=folder_config(name), skips=SkipLog(skip_bad))
    tfds_data.build(builder, folder)
    return Path(builder.data_dir)


def write_splits(
    splits: Mapping[str, Iterable[EncodedRecord]], out: str | os.PathLike, fmt: str = "folder",
    name: str = "default",
) -> dict[str, int]:
    """Write prepared splits as a reference-layout folder (`fmt='folder'`) into `out`, or as TFDS
    `instagan_folder/<name>` into data_dir `out` (`fmt='tfds'`). Either is staged as a folder in
    `out` first, so an interrupted or failed run leaves no part of its output behind."""
    if fmt not in ("folder", "tfds"):
        raise ValueError(f"unknown output format {fmt!r} (folder or tfds)")
    taken = [path for split in splits for path in (Path(out) / split, Path(out) / f"{split}_seg") if path.exists()]
    if fmt == "folder" and taken:
        raise DataError(f"{taken[0]} already exists: write a new data set into a new or empty folder")
    staging = Path(out) / f"{STAGING}_{name}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        counts = write_folder(staging, splits)
        if fmt == "tfds":
            build_folder_tfds(staging, out, name)
        else:
            for entry in sorted(staging.iterdir()):
                entry.rename(Path(out) / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts
