"""CycleGAN (Zhu et al. 2017), the mask-free baseline: networks and the training step (`step`), the
reference mapping (`reference`); one inference path, `step.translate`, for eval and translate alike."""

from __future__ import annotations

from instagan_jax.methods.base import (
    Method,
    Sections,
    TranslateOptions,
    Translator,
    unpaired_evaluation,
)
from instagan_jax.methods.cyclegan import reference, step
from instagan_jax.nn.build import ResnetModel
from instagan_jax.nn.losses import CycleLossWeights


def translator(model, options: TranslateOptions) -> Translator:
    """The run's generator of `options.direction` on the image alone (its masks are not translated)."""
    forward, _ = model.generators(options.direction)
    return Translator(lambda img, _: (step.translate(forward, img), None), masks=False)


METHOD = Method(name="cyclegan", title="CycleGAN", networks=step.NETWORKS, data="images",
                make_spec=step.Spec.from_config, init_state=step.init_state, train_step=step.train_step,
                summarize=step.summarize, modules=step.modules, visual_rows=step.visual_rows,
                translator=translator, evaluate=unpaired_evaluation(translator), reference=reference.REFERENCE,
                sections=Sections(model=ResnetModel, loss=CycleLossWeights))
