"""TFDS builder `instagan_coco`: two COCO categories as domains A and B, built from a local
COCO copy (`manual_dir`) into ArrayRecord files, without TensorFlow.

Splits are `<phase>A` and `<phase>B` for each (phase, instances json, image folder) of the
recipe; records are prepared with the reference's recipe (`data_prep.coco`),
whose options are the builder's `recipe` argument, not part of the config. Any category pair can
be built: `Builder(config=pair_config('cup', 'bottle'), recipe=CocoRecipe(image_size=128))`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from data_prep.coco import CocoRecipe, coco_splits
from data_prep.drops import DropTally, non_empty
from instagan_jax.data import tfds_data
from instagan_jax.data.errors import DataError, SkipLog
from instagan_jax.data.records import EncodedRecord

#: The category pairs with a ready-made config (the paper's COCO tasks).
REGISTERED_PAIRS = (("sheep", "giraffe"), ("cup", "bottle"), ("zebra", "elephant"))


@dataclasses.dataclass
class CocoPairConfig(tfds.core.BuilderConfig):
    """A category pair: `category_a` gives domain A, `category_b` domain B."""

    category_a: str = "sheep"
    category_b: str = "giraffe"


def _new_config(category_a: str, category_b: str, name: str | None = None) -> CocoPairConfig:
    name = name or f"{category_a}_{category_b}".replace(" ", "-")
    return CocoPairConfig(name=name, description=f"COCO {category_a} (A) <-> {category_b} (B)",
                          category_a=category_a, category_b=category_b)


class Builder(tfds.core.GeneratorBasedBuilder):
    """COCO category pairs for InstaGAN.

    recipe: the preparation's options (splits, image size, crowds); skips: the bad-record policy
    (default: fail on the first); drops: counts what the recipe leaves out, per split.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [_new_config(a, b) for a, b in REGISTERED_PAIRS]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put COCO 2017 into manual_dir: annotations/instances_{train,val}2017.json and the image "
        "folders train2017/, val2017/ (or give a recipe with other `splits`)."
    )

    def __init__(self, *, recipe: CocoRecipe = CocoRecipe(), skips: SkipLog | None = None,
                 drops: DropTally | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._original_state["recipe"] = recipe  # for pickling
        self.recipe = recipe
        self.skips = SkipLog() if skips is None else skips
        self.drops = DropTally() if drops is None else drops

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Images of two COCO categories with one mask per instance, for InstaGAN.",
            features=tfds_data.features(),
            homepage="https://cocodataset.org",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        cfg = self.builder_config
        splits = coco_splits(Path(dl_manager.manual_dir), cfg.category_a, cfg.category_b, self.recipe,
                             skips=self.skips, drops=self.drops)
        return {name: self._generate_examples(non_empty(name, records, self.drops))
                for name, records in splits.items()}

    def _generate_examples(self, records: Iterator[EncodedRecord]) -> Iterator[tuple[str, dict[str, Any]]]:
        for record in records:
            yield record.id, tfds_data.to_example(record)


def pair_config(category_a: str, category_b: str, name: str | None = None) -> CocoPairConfig:
    """The config of two COCO categories, named `name` or `<a>_<b>` (spaces as '-'): the
    registered one where that name is registered (TFDS accepts no other config of that name),
    else a new one. `DataError` if the registered config of that name is of other categories."""
    config = _new_config(category_a, category_b, name)
    registered = Builder.builder_configs.get(config.name)
    if registered is None:
        return config
    if (registered.category_a, registered.category_b) != (category_a, category_b):
        raise DataError(f"config name {config.name!r} is registered for {registered.category_a} (A) and "
                        f"{registered.category_b} (B), not {category_a} and {category_b}: choose another name")
    return registered
