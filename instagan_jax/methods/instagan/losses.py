"""InstaGAN's set losses: L1 over an image and its masks together, mask unions, context loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from instagan_jax.nn.instances import merge_masks
from instagan_jax.nn.losses import lsgan_per_sample, masked_mean, mean_except_batch  # noqa: F401 (InstaGAN's too)


def set_l1_per_sample(img_a: jax.Array, masks_a: jax.Array,
                      img_b: jax.Array, masks_b: jax.Array) -> jax.Array:
    """Mean |a - b| over the image and mask channels together, as the reference's cat([img, masks])."""
    b = img_a.shape[0]
    total = (jnp.sum(jnp.abs(img_a - img_b).reshape(b, -1), axis=1)
             + jnp.sum(jnp.abs(masks_a - masks_b).reshape(b, -1), axis=1))
    return total / (img_a[0].size + masks_a[0].size)


def context_weight(real_masks: jax.Array, fake_masks: jax.Array) -> jax.Array:
    """1 on background, 0 where any real or generated mask of the group is on: (B,H,W,1).

    Not detached: gradients reach the generated masks where the clamp is inactive.
    """
    both = jnp.concatenate([real_masks, fake_masks], axis=1)
    return (1.0 - merge_masks(both)) / 2.0


def context_per_sample(real_img: jax.Array, fake_img: jax.Array,
                       real_masks: jax.Array, fake_masks: jax.Array) -> jax.Array:
    """Context-preserving loss: background-weighted mean |real - fake| over H, W and channels."""
    weight = context_weight(real_masks, fake_masks)
    return mean_except_batch(weight * jnp.abs(real_img - fake_img))
