"""The discriminator's history of generated samples (Shrivastava et al. 2017), as fixed-size arrays.

The reference's `ImagePool(50)`: the first `size` queried samples are stored and returned unchanged;
afterwards each query returns, with probability 1/2, a random stored sample (which the new one
replaces), otherwise the new sample itself. Here the pool is a pytree in the train state, driven by
a JAX key, so it is checkpointed and replicated across devices like any other state. A pool stores
images (`ImagePool`, CycleGAN) or sets of an image with its masks (`SetPool`, InstaGAN).
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import jax
import jax.numpy as jnp


class SetPool(NamedTuple):
    """Stored generated sets: images (P,H,W,C), masks (P,K,H,W,1), valid (P,K); `count` filled slots."""

    img: jax.Array
    masks: jax.Array
    valid: jax.Array
    count: jax.Array


class ImagePool(NamedTuple):
    """Stored generated images (P,H,W,C); `count` filled slots."""

    img: jax.Array
    count: jax.Array


Pool = TypeVar("Pool", SetPool, ImagePool)


def empty_pool(size: int, height: int, width: int, channels: int, slots: int,
               dtype: jnp.dtype = jnp.float32) -> SetPool:
    """A pool of `size` sets of `slots` masks each (size 0 = no pool: queries return their input)."""
    return SetPool(
        img=jnp.zeros((size, height, width, channels), dtype),
        masks=-jnp.ones((size, slots, height, width, 1), dtype),
        valid=jnp.zeros((size, slots), bool),
        count=jnp.zeros((), jnp.int32),
    )


def empty_image_pool(size: int, height: int, width: int, channels: int, dtype: jnp.dtype = jnp.float32) -> ImagePool:
    """A pool of `size` images (size 0 = no pool: queries return their input)."""
    return ImagePool(img=jnp.zeros((size, height, width, channels), dtype), count=jnp.zeros((), jnp.int32))


def _query_one(pool: Pool, key: jax.Array, item: tuple[jax.Array, ...], active: jax.Array) -> tuple[Pool, tuple]:
    """One sample's query: store while filling, then swap with a random stored sample with p = 1/2."""
    stores = pool[:-1]
    size = stores[0].shape[0]
    coin_key, index_key = jax.random.split(key)
    filling = pool.count < size
    swap = active & ~filling & (jax.random.uniform(coin_key) > 0.5)
    slot = jnp.where(filling, pool.count, jax.random.randint(index_key, (), 0, size))
    write = swap | (active & filling)
    returned = tuple(jnp.where(swap, store[slot], new) for store, new in zip(stores, item))
    updated = tuple(jnp.where(write, store.at[slot].set(new), store) for store, new in zip(stores, item))
    count = pool.count + jnp.logical_and(active, filling).astype(jnp.int32)
    return type(pool)(*updated, count), returned


def _query(pool: Pool, key: jax.Array, items: tuple[jax.Array, ...], active: jax.Array) -> tuple[Pool, tuple]:
    """Query a batch (each item batch-first) sample by sample, as the reference; inactive samples leave
    the pool untouched."""
    if pool.img.shape[0] == 0:
        return pool, items
    keys = jax.random.split(key, items[0].shape[0])

    def step(pool, inputs):
        sample_key, sample_active, *sample_items = inputs
        return _query_one(pool, sample_key, tuple(sample_items), sample_active)

    return jax.lax.scan(step, pool, (keys, active, *items))


def query(pool: SetPool, key: jax.Array, img: jax.Array, masks: jax.Array, valid: jax.Array,
          active: jax.Array) -> tuple[SetPool, tuple[jax.Array, jax.Array, jax.Array]]:
    """Query a set pool with a batch of sets; returns the new pool and the sets to show the discriminator."""
    return _query(pool, key, (img, masks, valid), active)


def query_images(pool: ImagePool, key: jax.Array, img: jax.Array) -> tuple[ImagePool, jax.Array]:
    """Query an image pool with a batch of images; returns the new pool and the images to show."""
    pool, (shown,) = _query(pool, key, (img,), jnp.ones(img.shape[:1], bool))
    return pool, shown
