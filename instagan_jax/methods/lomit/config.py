"""LOMIT's own config sections: the style and mask networks, the discriminator's depth and attributes, its
loss weights and critic steps (docs/LOMIT.md)."""

from __future__ import annotations

import dataclasses

from instagan_jax.config import TrainConfig, at_least
from instagan_jax.methods.base import Sections
from instagan_jax.nn.build import ModelConfig
from instagan_jax.nn.losses import LossWeights


@dataclasses.dataclass(frozen=True)
class LomitModel(ModelConfig):
    """The shared architecture fields, and: style code size, mask network depth, one style head for fg and
    bg (the public code's sharing; the paper has two), discriminator depth, attributes the data labels."""

    style_dim: int = at_least(1, 8)
    mask_layers: int = at_least(0, 6)
    shared_style_heads: bool = False
    d_layers: int = at_least(1, 6)
    n_attributes: int = at_least(1, 2)


@dataclasses.dataclass(frozen=True)
class LomitLoss(LossWeights):
    """Gradient penalty, attribute classification, cycle and self reconstruction, content, style, the mask
    regularisers R_1 (similar content, similar mask) and R_2 (small masks)."""

    lambda_gp: float = 10.0
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_content: float = 1.0
    lambda_style: float = 1.0
    lambda_mask_sim: float = 0.1
    lambda_mask_size: float = 1e-4


@dataclasses.dataclass(frozen=True)
class LomitTrain(TrainConfig):
    """The shared optimisation fields, and the discriminator updates per generator update."""

    n_critic: int = at_least(1, 5)


SECTIONS = Sections(model=LomitModel, loss=LomitLoss, train=LomitTrain)


def check_data(config, source) -> None:
    """ValueError unless the data labels `model.n_attributes` attributes."""
    if len(source.attributes) != config.model.n_attributes:
        raise ValueError(f"config key model.n_attributes: {config.model.n_attributes}, but the data labels "
                         f"{len(source.attributes)} attribute(s) {list(source.attributes)}")
