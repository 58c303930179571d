"""TFDS builder `instagan_coco`: two COCO categories as domains A and B, built from a local
COCO copy (`manual_dir`) into ArrayRecord files, without TensorFlow.

Splits are `<phase>A` and `<phase>B` for each configured (phase, instances json, image folder);
records are prepared with the reference's recipe (`instagan_jax.data.prepare.coco`). Any
category pair can be built by passing `pair_config('cup', 'bottle')` as `config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import tensorflow_datasets as tfds

from instagan_jax.data import tfds_data
from instagan_jax.data.coco import load_coco
from instagan_jax.data.errors import SkipLog
from instagan_jax.data.prepare.coco import COCO2017_SPLITS, coco_records
from instagan_jax.data.records import EncodedRecord


@dataclasses.dataclass
class CocoPairConfig(tfds.core.BuilderConfig):
    """A category pair, the splits to read (paths relative to manual_dir) and the recipe's options."""

    category_a: str = "sheep"
    category_b: str = "giraffe"
    splits: tuple[tuple[str, str, str], ...] = COCO2017_SPLITS
    image_size: int = 256
    include_crowd: bool = True
    skip_bad: bool = False


def pair_config(category_a: str, category_b: str, **options: Any) -> CocoPairConfig:
    """Config named `<a>_<b>` (spaces as '-') for any two COCO category names."""
    name = f"{category_a}_{category_b}".replace(" ", "-")
    return CocoPairConfig(name=name, description=f"COCO {category_a} (A) <-> {category_b} (B)",
                          category_a=category_a, category_b=category_b, **options)


class Builder(tfds.core.GeneratorBasedBuilder):
    """COCO category pairs for InstaGAN."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [pair_config(a, b) for a, b in (("sheep", "giraffe"), ("cup", "bottle"), ("zebra", "elephant"))]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put COCO 2017 into manual_dir: annotations/instances_{train,val}2017.json and the image "
        "folders train2017/, val2017/ (or configure other `splits`)."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Images of two COCO categories with one mask per instance, for InstaGAN.",
            features=tfds_data.features(),
            homepage="https://cocodataset.org",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        cfg, root = self.builder_config, Path(dl_manager.manual_dir)
        skips = SkipLog(cfg.skip_bad)
        out = {}
        for phase, annotation_file, image_dir in cfg.splits:
            coco = load_coco(root / annotation_file)
            for domain, category in (("A", cfg.category_a), ("B", cfg.category_b)):
                records = coco_records(coco, root / image_dir, category, image_size=cfg.image_size,
                                       include_crowd=cfg.include_crowd, skips=skips)
                out[f"{phase}{domain}"] = self._generate_examples(records)
        return out

    def _generate_examples(self, records: Iterator[EncodedRecord]) -> Iterator[tuple[str, dict[str, Any]]]:
        for record in records:
            yield record.id, tfds_data.to_example(record)
