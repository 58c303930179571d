"""Losses shared by the methods, computed per sample so that a batch can mask out samples.

Each `*_per_sample` function returns a (B,) array whose plain mean is the reference's loss
(every sample has the same number of elements); `masked_mean` averages over active samples only.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LossWeights:
    """The loss weights of every method (the reference's lambdas); each method reads its own."""

    lambda_A: float = 10.0
    lambda_B: float = 10.0
    lambda_idt: float = 1.0
    lambda_ctx: float = 1.0  # InstaGAN's context-preserving loss
    lambda_L1: float = 100.0  # pix2pix
    # LOMIT: gradient penalty, attribute classification, cycle and self reconstruction, content, style,
    # the mask regularisers R_1 (similar content, similar mask) and R_2 (small masks)
    lambda_gp: float = 10.0
    lambda_cls: float = 1.0
    lambda_rec: float = 10.0
    lambda_content: float = 1.0
    lambda_style: float = 1.0
    lambda_mask_sim: float = 0.1
    lambda_mask_size: float = 1e-4


def mean_except_batch(x: jax.Array) -> jax.Array:
    return jnp.mean(x.reshape(x.shape[0], -1), axis=1)


def masked_mean(per_sample: jax.Array, active: jax.Array | None = None) -> jax.Array:
    """Mean of a (B,) loss over the active samples (all if None); 0 when none is active."""
    if active is None:
        return jnp.mean(per_sample)
    total = jnp.sum(jnp.where(active, per_sample, 0.0))
    return total / jnp.maximum(jnp.sum(active), 1)


def lsgan_per_sample(scores: jax.Array, target: float) -> jax.Array:
    """Least-squares GAN loss: mean (score - target)^2 over each sample's score map."""
    return mean_except_batch(jnp.square(scores - target))
