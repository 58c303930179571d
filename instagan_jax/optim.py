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


def adam_step(train: TrainConfig, lr: jax.Array, params, opt_state, grads, apply: jax.Array | bool = True):
    """One Adam update of `params` at learning rate `lr` if the scalar `apply` holds, else none:
    (new params, new optimiser state). The update is optax's `scale_by_adam` step, m_hat / (sqrt(v_hat) + eps).

    The new moments are materialised (an optimisation barrier) before the parameters' update reads
    them. Without it XLA recomputes them inside that update from the old moments, which must then
    outlive the moments' own in-place update: inside the loop over mask groups it copied the moments and
    parameters at the start of every group (docs/BENCHMARKS.md section 7).
    """
    _, new_state = adam(train).update(grads, opt_state)
    new_state = jax.lax.optimization_barrier(where(apply, new_state, opt_state))
    count = jnp.maximum(new_state.count, 1)  # 0 only where nothing is applied: no division by zero
    mu_hat = optax.tree.bias_correction(new_state.mu, train.beta1, count)
    nu_hat = optax.tree.bias_correction(new_state.nu, train.beta2, count)
    new_params = jax.tree.map(lambda p, m, v: jnp.where(apply, p - lr * (m / (jnp.sqrt(v) + train.eps)), p),
                              params, mu_hat, nu_hat)
    return new_params, new_state


def where(flag: jax.Array, new, old):
    """`new` where the scalar `flag` holds, else `old` (leaf by leaf): a conditional update."""
    return jax.tree.map(lambda n, o: jnp.where(flag, n, o), new, old)
