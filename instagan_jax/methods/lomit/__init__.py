"""LOMIT (Cho et al. 2019): exemplar-guided local translation with learned masks and Highway AdaIN.
Networks (`networks`), losses (`losses`), the WGAN-GP training step (`step`) and its evaluation
(`evaluate`); docs/LOMIT.md. Its one inference path is `step.translate` (an image and an exemplar)."""

from __future__ import annotations

import numpy as np

from instagan_jax.data.transforms import TransformConfig, resize, resize_mask, to_unit_range
from instagan_jax.methods.base import Method, TranslateOptions, TranslateRules, Translator
from instagan_jax.methods.lomit import config, evaluate, step

SIZE_MULTIPLE = 16  # the style encoder halves the image 4 times


def translator(model, options: TranslateOptions) -> Translator:
    """Every image takes `options.exemplar`'s foreground style (RGB uint8, resized to the network size);
    `options.user_mask` (uint8 (H, W), white = translate), resized to the network's 1/4 resolution,
    replaces the learned mask of every image (the paper's user intervention)."""
    if options.exemplar is None:
        raise ValueError("a LOMIT run translates with an exemplar: give --exemplar IMAGE")
    size = tuple(options.size or model.config.data.crop_size)
    exemplar = to_unit_range(resize(options.exemplar, size, TransformConfig.image_filter))[None]
    mask = None
    if options.user_mask is not None:
        quarter = (size[0] // 4, size[1] // 4)
        mask = resize_mask(options.user_mask, quarter, TransformConfig.mask_filter).astype(np.float32) / 255.0
        mask = mask[None, ..., None]

    def translate_image(img, _):
        dtype = img.dtype
        user = None if mask is None else mask.astype(dtype)
        out = step.translate(model.networks["G"], img, exemplar.astype(dtype), user)
        return out["output"], None

    return Translator(translate_image, masks=False)


METHOD = Method(name="lomit", title="LOMIT", networks=step.NETWORKS, data="attributes",
                make_spec=step.Spec.from_config, init_state=step.init_state, train_step=step.train_step,
                summarize=step.summarize, modules=step.modules, visual_rows=step.visual_rows,
                translate=TranslateRules(exemplar=True, user_mask=True, size_multiple=SIZE_MULTIPLE),
                translator=translator, evaluate=evaluate.evaluate_run, table_rows=evaluate.table_rows,
                eval_extras=frozenset({"fid_weights", "lpips", "classifier_dir"}), sections=config.SECTIONS,
                check_data=config.check_data)
