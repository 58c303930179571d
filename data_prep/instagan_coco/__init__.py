"""TFDS builder `instagan_coco`: COCO category pairs as InstaGAN domains (see the builder module)."""

from data_prep.instagan_coco.instagan_coco_dataset_builder import (
    REGISTERED_PAIRS,
    Builder,
    CocoPairConfig,
    pair_config,
)

__all__ = ["REGISTERED_PAIRS", "Builder", "CocoPairConfig", "pair_config"]
