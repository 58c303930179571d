"""pix2pix's own config sections: dropout in the U-Net, the L1 weight."""

from __future__ import annotations

import dataclasses

from instagan_jax.config import TrainConfig
from instagan_jax.methods.base import Sections
from instagan_jax.nn.build import ModelConfig
from instagan_jax.nn.losses import LossWeights


@dataclasses.dataclass(frozen=True)
class Pix2pixModel(ModelConfig):
    """The shared architecture fields, and dropout 0.5 in the U-Net's innermost ngf*8 blocks (train and test)."""

    dropout: bool = False


@dataclasses.dataclass(frozen=True)
class Pix2pixLoss(LossWeights):
    """The vanilla GAN term's weight is 1; L1 to the target weighs `lambda_L1`."""

    lambda_L1: float = 100.0


SECTIONS = Sections(model=Pix2pixModel, loss=Pix2pixLoss, train=TrainConfig)
