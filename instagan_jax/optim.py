"""Adam and the reference's 'lambda' learning-rate policy, read from the config's `train` section.

The rate is constant for `niter` epochs, then decays linearly to zero over `niter_decay` epochs,
stepped once per epoch of `iters_per_epoch` iterations (the reference's `scheduler.step()` per epoch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from instagan_jax.config import TrainConfig


def learning_rate(train: TrainConfig, iters_per_epoch: float, iteration: jax.Array) -> jax.Array:
    """Learning rate during a (0-based) iteration."""
    epoch = jnp.floor(iteration / iters_per_epoch)
    decay = jnp.maximum(0.0, epoch + train.epoch_count - train.niter) / (train.niter_decay + 1)
    return train.lr * jnp.maximum(0.0, 1.0 - decay)


def adam(train: TrainConfig) -> optax.GradientTransformation:
    """Adam's moments (the learning rate is applied by `adam_step`)."""
    return optax.scale_by_adam(b1=train.beta1, b2=train.beta2, eps=train.eps)


def adam_step(train: TrainConfig, lr: jax.Array, params, opt_state, grads):
    """One Adam update of `params` at learning rate `lr`: (new params, new optimiser state)."""
    updates, opt_state = adam(train).update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p - lr * u, params, updates), opt_state


def where(flag: jax.Array, new, old):
    """`new` where the scalar `flag` holds, else `old` (leaf by leaf): a conditional update."""
    return jax.tree.map(lambda n, o: jnp.where(flag, n, o), new, old)
