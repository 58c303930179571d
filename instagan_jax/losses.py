"""InstaGAN's losses, computed per sample so that a batch can mask out samples.

Each `*_per_sample` function returns a (B,) array whose plain mean is the reference's loss
(every sample has the same number of elements); `masked_mean` averages over active samples only.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The reference's lambdas (insta_gan_model options)."""

    lambda_A: float = 10.0
    lambda_B: float = 10.0
    lambda_idt: float = 1.0
    lambda_ctx: float = 1.0


def _mean_except_batch(x: jax.Array) -> jax.Array:
    return jnp.mean(x.reshape(x.shape[0], -1), axis=1)


def masked_mean(per_sample: jax.Array, active: jax.Array | None = None) -> jax.Array:
    """Mean of a (B,) loss over the active samples (all if None); 0 when none is active."""
    if active is None:
        return jnp.mean(per_sample)
    total = jnp.sum(jnp.where(active, per_sample, 0.0))
    return total / jnp.maximum(jnp.sum(active), 1)


def lsgan_per_sample(scores: jax.Array, target: float) -> jax.Array:
    """Least-squares GAN loss: mean (score - target)^2 over each sample's score map."""
    return _mean_except_batch(jnp.square(scores - target))


def set_l1_per_sample(img_a: jax.Array, masks_a: jax.Array,
                      img_b: jax.Array, masks_b: jax.Array) -> jax.Array:
    """Mean |a - b| over the image and mask channels together, as the reference's cat([img, masks])."""
    b = img_a.shape[0]
    total = (jnp.sum(jnp.abs(img_a - img_b).reshape(b, -1), axis=1)
             + jnp.sum(jnp.abs(masks_a - masks_b).reshape(b, -1), axis=1))
    return total / (img_a[0].size + masks_a[0].size)


def merge_masks(masks: jax.Array) -> jax.Array:
    """Union of soft masks (B,K,H,W,1) -> (B,H,W,1) in [-1, 1]: clamp(sum (m+1)/2, 0, 1)*2 - 1."""
    return jnp.clip(jnp.sum((masks + 1.0) / 2.0, axis=1), 0.0, 1.0) * 2.0 - 1.0


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
    return _mean_except_batch(weight * jnp.abs(real_img - fake_img))
