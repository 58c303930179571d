"""The discriminator's history of generated sets (Shrivastava et al. 2017), as fixed-size arrays.

The reference's `ImagePool(50)`: the first `size` queried sets are stored and returned unchanged;
afterwards each query returns, with probability 1/2, a random stored set (which the new one replaces),
otherwise the new set itself. Here the pool is a pytree in the train state, driven by a JAX key, so
it is checkpointed and replicated across devices like any other state.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class SetPool(NamedTuple):
    """Stored generated sets: images (P,H,W,C), masks (P,K,H,W,1), valid (P,K); `count` filled slots."""

    img: jax.Array
    masks: jax.Array
    valid: jax.Array
    count: jax.Array


def empty_pool(size: int, height: int, width: int, channels: int, slots: int,
               dtype: jnp.dtype = jnp.float32) -> SetPool:
    """A pool of `size` sets of `slots` masks each (size 0 = no pool: queries return their input)."""
    return SetPool(
        img=jnp.zeros((size, height, width, channels), dtype),
        masks=-jnp.ones((size, slots, height, width, 1), dtype),
        valid=jnp.zeros((size, slots), bool),
        count=jnp.zeros((), jnp.int32),
    )


def _query_one(pool: SetPool, key: jax.Array, item: tuple[jax.Array, ...],
               active: jax.Array) -> tuple[SetPool, tuple[jax.Array, ...]]:
    """One sample's query: store while filling, then swap with a random stored set with p = 1/2."""
    size = pool.img.shape[0]
    coin_key, index_key = jax.random.split(key)
    filling = pool.count < size
    swap = active & ~filling & (jax.random.uniform(coin_key) > 0.5)
    slot = jnp.where(filling, pool.count, jax.random.randint(index_key, (), 0, size))
    write = swap | (active & filling)
    stored = tuple(x[slot] for x in pool[:3])
    returned = tuple(jnp.where(swap, old, new) for old, new in zip(stored, item))
    updated = tuple(
        jnp.where(write, x.at[slot].set(new), x) for x, new in zip(pool[:3], item)
    )
    count = pool.count + jnp.logical_and(active, filling).astype(jnp.int32)
    return SetPool(*updated, count), returned


def query(pool: SetPool, key: jax.Array, img: jax.Array, masks: jax.Array, valid: jax.Array,
          active: jax.Array) -> tuple[SetPool, tuple[jax.Array, jax.Array, jax.Array]]:
    """Query a batch sample by sample (as the reference); inactive samples leave the pool untouched.

    Returns the new pool and the sets to show the discriminator (img, masks, valid).
    """
    if pool.img.shape[0] == 0:
        return pool, (img, masks, valid)
    keys = jax.random.split(key, img.shape[0])

    def step(pool, inputs):
        sample_key, sample_img, sample_masks, sample_valid, sample_active = inputs
        return _query_one(pool, sample_key, (sample_img, sample_masks, sample_valid), sample_active)

    return jax.lax.scan(step, pool, (keys, img, masks, valid, active))
