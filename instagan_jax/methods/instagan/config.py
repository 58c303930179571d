"""InstaGAN's own config sections: the instance layout, the context-preserving loss weight, the mask groups."""

from __future__ import annotations

import dataclasses

from instagan_jax.config import TrainConfig, at_least
from instagan_jax.methods.base import Sections
from instagan_jax.nn.build import ResnetModel
from instagan_jax.nn.losses import CycleLossWeights

INSTANCE_LAYOUTS = ("padded", "packed")


@dataclasses.dataclass(frozen=True)
class InstaganModel(ResnetModel):
    """The ResNet model section plus how the set networks lay out a call's instance slots.

    `instance_layout` "padded" (the reference's work): the generator's mask branch runs on every slot,
    valid or not, and the set feature is a masked sum. "packed": the valid slots of a generator call are
    packed into a bucket of ceil(`pack_fraction` x slots) entries, the mask branch runs on the bucket
    only and the set feature is a segment sum; a call with more valid slots than that runs padded. Both
    give the same numbers (float64: to rounding) and the same parameters, so either can resume the
    other's checkpoints.
    """

    instance_layout: str = "padded"
    pack_fraction: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.instance_layout not in INSTANCE_LAYOUTS:
            raise ValueError(f"config key model.instance_layout: expected one of {list(INSTANCE_LAYOUTS)}, "
                             f"got {self.instance_layout!r}")
        if not 0.0 < self.pack_fraction <= 1.0:
            raise ValueError(f"config key model.pack_fraction: expected a number in (0, 1] (the bucket's share of "
                             f"a call's instance slots), got {self.pack_fraction!r}")

    @property
    def packed_fraction(self) -> float | None:
        """The bucket's share of the slots under the packed layout, None under the padded one."""
        return self.pack_fraction if self.instance_layout == "packed" else None


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


SECTIONS = Sections(model=InstaganModel, loss=InstaganLoss, train=InstaganTrain)
