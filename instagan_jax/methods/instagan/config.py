"""InstaGAN's own config sections: the context-preserving loss weight, the mask groups."""

from __future__ import annotations

import dataclasses

from instagan_jax.config import TrainConfig, at_least
from instagan_jax.methods.base import Sections
from instagan_jax.nn.build import ResnetModel
from instagan_jax.nn.losses import CycleLossWeights


@dataclasses.dataclass(frozen=True)
class InstaganLoss(CycleLossWeights):
    """Cycle, identity and the context-preserving loss (the reference's lambdas)."""

    lambda_ctx: float = 1.0


@dataclasses.dataclass(frozen=True)
class InstaganTrain(TrainConfig):
    """The shared optimisation fields and how the instances of an image are translated: `ins_per` at a
    time, in `ins_max // ins_per` groups (a `lax.scan`; unrolled with `unroll_groups` true)."""

    ins_per: int = at_least(1, 2)
    unroll_groups: bool | str = "auto"  # unroll the loop over mask groups; "auto" (= false): a lax.scan

    def __post_init__(self) -> None:
        if self.unroll_groups not in (True, False, "auto"):
            raise ValueError('config key train.unroll_groups: expected true, false or "auto", '
                             f"got {self.unroll_groups!r}")
        if self.ins_per >= 1 and self.ins_max % self.ins_per:
            raise ValueError(f"config keys train.ins_max={self.ins_max} and train.ins_per={self.ins_per}: ins_max must "
                             f"be a multiple of ins_per (masks are translated in groups of ins_per; the last "
                             f"{self.ins_max % self.ins_per} slot(s) would never be used)")


SECTIONS = Sections(model=ResnetModel, loss=InstaganLoss, train=InstaganTrain)
