"""Instance-set utilities: validity, largest-first selection, padding, mask groups and their union."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def mask_valid(masks: jax.Array) -> jax.Array:
    """A slot is valid when any pixel of its mask is above -1: (B,K,H,W,1) -> (B,K) bool."""
    return jnp.any(masks > -1.0, axis=(2, 3, 4))


def batchwide_valid(masks: jax.Array) -> jax.Array:
    """The reference's rule: a slot counts in every sample if it is non-empty in any sample."""
    used = jnp.any(mask_valid(masks), axis=0)
    return jnp.broadcast_to(used, masks.shape[:2])


def pad_slots(masks: jax.Array, k: int) -> jax.Array:
    """Pad (B,K,H,W,1) masks with empty (-1) slots up to k slots (no-op when K >= k)."""
    missing = k - masks.shape[1]
    if missing <= 0:
        return masks
    return jnp.pad(masks, ((0, 0), (0, missing), (0, 0), (0, 0), (0, 0)), constant_values=-1.0)


def select_largest(masks: jax.Array, ins_max: int) -> tuple[jax.Array, jax.Array]:
    """Per sample, the `ins_max` masks of largest area, largest first, empty slots last.

    Area is the mask's mean value; ties keep slot order. Fewer than `ins_max` slots are padded with
    -1. Returns the selected masks (B,ins_max,H,W,1) and their validity (B,ins_max).
    """
    masks = pad_slots(masks, ins_max)
    area = jnp.mean(masks, axis=(2, 3, 4))
    order = jnp.argsort(-area, axis=1, stable=True)[:, :ins_max]
    selected = jnp.take_along_axis(masks, order[:, :, None, None, None], axis=1)
    return selected, mask_valid(selected)


def split_groups(masks: jax.Array, valid: jax.Array,
                 ins_per: int) -> tuple[jax.Array, jax.Array]:
    """(B,K,H,W,1), (B,K) -> groups (G,B,ins_per,H,W,1), (G,B,ins_per) with G = K // ins_per.

    Group-major so that `lax.scan` runs over groups; slots beyond G*ins_per are dropped, as in the
    reference's sequential mini-batches.
    """
    batch, k = valid.shape
    n_groups = k // ins_per
    if n_groups == 0:
        raise ValueError(f"{k} mask slots cannot form one group of ins_per={ins_per}")
    used = n_groups * ins_per
    grouped = masks[:, :used].reshape((batch, n_groups, ins_per) + masks.shape[2:])
    grouped_valid = valid[:, :used].reshape(batch, n_groups, ins_per)
    return jnp.swapaxes(grouped, 0, 1), jnp.swapaxes(grouped_valid, 0, 1)


def merge_groups(groups: jax.Array) -> jax.Array:
    """Inverse of `split_groups` on the kept slots: (G,B,N,...) -> (B,G*N,...)."""
    groups = jnp.swapaxes(groups, 0, 1)
    return groups.reshape((groups.shape[0], -1) + groups.shape[3:])


def merge_masks(masks: jax.Array) -> jax.Array:
    """Union of soft masks (B,K,H,W,1) -> (B,H,W,1) in [-1, 1]: clamp(sum (m+1)/2, 0, 1)*2 - 1."""
    return jnp.clip(jnp.sum((masks + 1.0) / 2.0, axis=1), 0.0, 1.0) * 2.0 - 1.0
