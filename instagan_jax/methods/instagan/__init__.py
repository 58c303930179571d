"""InstaGAN (Mo, Cho, Shin, ICLR 2019): set generator and discriminator (`networks`), the sequential
mini-batch training step (`step`), and sequential inference (`inference`)."""

from __future__ import annotations

from instagan_jax.config import Config
from instagan_jax.methods import Method
from instagan_jax.methods.instagan import step


def make_spec(config: Config, iters_per_epoch: float = 1.0) -> step.StepSpec:
    """The static description of an iteration for a config (`train.unroll_groups` "auto": a scan)."""
    height, width = config.data.crop_size
    unroll = config.train.unroll_groups is True
    return step.StepSpec(config.model, height, width, train=config.train, loss=config.loss,
                         iters_per_epoch=float(iters_per_epoch), unroll_groups=unroll)


METHOD = Method(name="instagan", networks=step.GENERATORS + step.DISCRIMINATORS, data="sets",
                make_spec=make_spec, init_state=step.init_state, train_step=step.train_step,
                summarize=step.summarize, modules=step.modules, visual_rows=step.visual_rows)
