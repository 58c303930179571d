"""pix2pix (Isola et al., CVPR 2017), paired translation A -> B: the U-Net and its training step (`step`),
the reference mapping (`reference`); one inference path, `step.translate` (test-batch statistics,
dropout drawn from a fixed seed), for eval and translate alike."""

from __future__ import annotations

import jax

from instagan_jax.methods.base import (
    Method,
    TranslateOptions,
    TranslateRules,
    Translator,
    paired_evaluation,
)
from instagan_jax.methods.pix2pix import config, reference, step

TRANSLATE_SEED = 0  # the test-time dropout's seed: one fixed seed, so that a translation can be repeated


def translator(model, options: TranslateOptions) -> Translator:
    """The run's U-Net on the image alone, A -> B."""
    if options.direction != "AtoB":
        raise ValueError("a pix2pix run translates A -> B only (--direction AtoB)")
    key = jax.random.key(TRANSLATE_SEED)
    return Translator(lambda img, _: (step.translate(model.networks["G"], img, key), None), masks=False)


METHOD = Method(name="pix2pix", title="pix2pix", networks=step.NETWORKS, data="paired",
                make_spec=step.Spec.from_config, init_state=step.init_state, train_step=step.train_step,
                summarize=step.summarize, modules=step.modules, translate=TranslateRules(directions=("AtoB",)),
                translator=translator, evaluate=paired_evaluation(translator), eval_extras=frozenset({"lpips"}),
                reference=reference.REFERENCE, sections=config.SECTIONS)
