"""InstaGAN (Mo, Cho, Shin, ICLR 2019): set generator and discriminator (`networks`), the sequential
mini-batch training step (`step`), sequential inference (`inference`) and the reference mapping
(`reference`). Its one inference path for eval and translate is `inference.translate_forward`."""

from __future__ import annotations

from instagan_jax.methods.base import Method, TranslateOptions, TranslateRules, Translator, unpaired_evaluation
from instagan_jax.methods.instagan import config, inference, reference, step


def make_spec(run, iters_per_epoch: float = 1.0) -> step.StepSpec:
    """The static description of an iteration for a run's config (`train.unroll_groups` "auto": a scan)."""
    height, width = run.data.crop_size
    unroll = run.train.unroll_groups is True
    return step.StepSpec(run.model, height, width, train=run.train, loss=run.loss,
                         iters_per_epoch=float(iters_per_epoch), unroll_groups=unroll)


def translator(model, options: TranslateOptions) -> Translator:
    """The run's generator of `options.direction`, forward only, on the image and its masks (in the
    order given: largest first), `options.ins_per` (default: the run's `train.ins_per`) at a time."""
    forward, _ = model.generators(options.direction)
    ins_per = options.ins_per or model.config.train.ins_per
    return Translator(lambda img, slots: inference.translate_forward(forward, img, slots, ins_per=ins_per),
                      masks=True, about=f"{ins_per} instance(s) per group")


METHOD = Method(name="instagan", title="InstaGAN", networks=step.GENERATORS + step.DISCRIMINATORS, data="sets",
                make_spec=make_spec, init_state=step.init_state, train_step=step.train_step,
                summarize=step.summarize, modules=step.modules, visual_rows=step.visual_rows,
                translate=TranslateRules(masks=True, ins_per=True), translator=translator,
                evaluate=unpaired_evaluation(translator), reference=reference.REFERENCE, sections=config.SECTIONS)
