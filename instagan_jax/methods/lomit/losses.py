"""LOMIT's losses that are more than an L1 or a mean: WGAN-GP's gradient penalty, multi-label
attribute classification, and the two mask regularisers (LOMIT.md, "Losses")."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def interpolate(real: jax.Array, fake: jax.Array, alpha: jax.Array) -> jax.Array:
    """x_hat = alpha * real + (1 - alpha) * fake, one alpha (B,) per sample."""
    alpha = alpha.reshape((-1,) + (1,) * (real.ndim - 1))
    return alpha * real + (1.0 - alpha) * fake


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], x_hat: jax.Array) -> jax.Array:
    """mean over samples of (||d sum(critic(x_hat_i)) / d x_hat_i||_2 - 1)^2 (WGAN-GP, StarGAN's form:
    the gradient of the summed patch scores, its L2 norm per sample over all pixels and channels)."""
    grads = jax.grad(lambda x: jnp.sum(critic(x)))(x_hat)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1))
    return jnp.mean(jnp.square(norms - 1.0))


def attribute_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy with logits, summed over attributes, averaged over samples (StarGAN's)."""
    per_attribute = jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    return jnp.mean(jnp.sum(per_attribute, axis=1))


def mask_similarity(mask: jax.Array, content: jax.Array) -> jax.Array:
    """R_1 = mean over images and pixel pairs (i, j) of |m_i - m_j| * cos(c_i, c_j): pixels of similar
    content should get similar mask values. `mask` (B, h, w, 1), `content` (B, h, w, C) at the same
    resolution, held constant (no gradient reaches it)."""
    batch = mask.shape[0]
    m = mask.reshape(batch, -1)
    c = jax.lax.stop_gradient(content).reshape(batch, m.shape[1], -1)
    unit = c / jnp.maximum(jnp.linalg.norm(c, axis=-1, keepdims=True), 1e-8)
    cosine = jnp.einsum("bic,bjc->bij", unit, unit)
    return jnp.mean(jnp.abs(m[:, :, None] - m[:, None, :]) * cosine)


def mask_size(mask: jax.Array) -> jax.Array:
    """R_2 = mean(m): a pull towards small masks."""
    return jnp.mean(mask)
