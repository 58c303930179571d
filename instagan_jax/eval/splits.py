"""Which data `instagan eval` scores a run on: held out from what it trained on, by data kind."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from instagan_jax.data.errors import DataError

HELD_OUT_SEED_OFFSET = 1000  # shapes: evaluated on seed = training seed + this


def held_out_data(data, given: set[str]):
    """(DataConfig to evaluate on, which split it is) from a run's data config; option names in `given`
    were set by the user (--data) and are kept as they are."""
    options = dict(data.options)
    if data.kind in ("shapes", "attribute_shapes"):
        trained_seed = options.get("seed", 0)
        if "seed" in given:
            return data, f"{data.kind} seed {trained_seed} (from --data)"
        options["seed"] = trained_seed + HELD_OUT_SEED_OFFSET
        split = (f"held out: {data.kind} seed {options['seed']} (training seed {trained_seed} + "
                 f"{HELD_OUT_SEED_OFFSET})")
    elif data.kind == "celeba":
        phase = options.get("phase", "train")
        if "phase" in given:
            return data, f"CelebA phase {phase} (from --data)"
        options["phase"] = "test"
        split = f"held out: CelebA phase test (the run trained on phase {phase})"
    elif data.kind in ("folder", "tfds"):
        phase = options.get("phase", "train")
        if data.kind == "folder" and not Path(str(options.get("root", ""))).is_dir():
            raise DataError(f"data root {options.get('root')} does not exist: eval reads its testA / testB (or, "
                            f"without them, {phase}A / {phase}B); give the root with --data options.root=...")
        if "phase" in given:
            return data, f"{phase}A / {phase}B (from --data)"
        if not _has_test_split(data.kind, options):
            return data, f"no testA/testB split found: evaluated on the training split {phase}A / {phase}B"
        options["phase"] = "test"
        split = "held out: testA / testB"
    else:
        return data, (f"the run's own {data.kind} data (no test split: give held-out files with "
                      "--data options.annotations=... --data options.images=...)")
    return dataclasses.replace(data, options=options), split


def _has_test_split(kind: str, options: dict[str, Any]) -> bool:
    """Whether a folder root holds testA/testB folders, or a TFDS data set has testA/testB splits."""
    if kind == "folder":
        return all((Path(options.get("root", ".")) / f"test{d}").is_dir() for d in "AB")
    import tensorflow_datasets as tfds

    try:
        splits = tfds.builder(options["name"], data_dir=options.get("data_dir")).info.splits
    except Exception:  # noqa: BLE001 - not there: opening the sources names the problem
        return False
    return {"testA", "testB"} <= set(splits.keys())
