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
    """A method's loss weights (the reference's lambdas): each method's loss section (`Method.sections`)
    subclasses this with its own."""


@dataclasses.dataclass(frozen=True)
class CycleLossWeights(LossWeights):
    """Cycle consistency and identity, InstaGAN's and CycleGAN's."""

    lambda_A: float = 10.0
    lambda_B: float = 10.0
    lambda_idt: float = 1.0


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
