"""Instance-set utilities: validity, largest-first selection, padding, mask groups and their union, and the
packed form of a set (its valid slots in a fixed-size bucket, summed per sample with segment sums)."""

from __future__ import annotations

import math
from typing import NamedTuple

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


class Bucket(NamedTuple):
    """The valid slots of a (B,K) set packed into a fixed number of entries, in slot order.

    `index` is each entry's flat slot b*K + k, B*K (one past the end) for an unused entry; `live`
    says which entries hold a slot.
    """

    index: jax.Array  # (P,) int
    live: jax.Array  # (P,) bool
    batch: int
    slots: int

    @property
    def sample(self) -> jax.Array:
        """Each entry's sample b (B for an unused entry: dropped by `segment_sum`)."""
        return self.index // self.slots


def bucket_capacity(slots: int, fraction: float) -> int:
    """Entries of a bucket holding `fraction` of `slots` (rounded up, at least 1)."""
    return max(1, math.ceil(fraction * slots - 1e-9))


def pack(valid: jax.Array, capacity: int) -> Bucket:
    """The first `capacity` valid slots of `valid` (B,K), in slot order (see `fits` for the rest)."""
    batch, slots = valid.shape
    flat = valid.reshape(-1)
    (index,) = jnp.nonzero(flat, size=capacity, fill_value=flat.size)
    return Bucket(index, index < flat.size, batch, slots)


def fits(valid: jax.Array, capacity: int) -> jax.Array:
    """Whether all valid slots of `valid` fit in a bucket of `capacity` entries (scalar bool)."""
    return jnp.sum(valid) <= capacity


def gather_entries(folded: jax.Array, bucket: Bucket) -> jax.Array:
    """The bucket's entries of per-slot values folded to (B*K, ...) -> (P, ...)."""
    return jnp.take(folded, bucket.index, axis=0, mode="clip")


def segment_sum(entries: jax.Array, bucket: Bucket) -> jax.Array:
    """Per-sample sum of the live entries (P, ...) -> (B, ...): `set_sum` on the packed form."""
    live = bucket.live.reshape((-1,) + (1,) * (entries.ndim - 1))
    return jax.ops.segment_sum(jnp.where(live, entries, 0), bucket.sample, num_segments=bucket.batch)


def scatter_entries(folded: jax.Array, entries: jax.Array, bucket: Bucket) -> jax.Array:
    """`folded` (B*K, ...) with the bucket's slots replaced by its live entries (P, ...)."""
    return folded.at[bucket.index].set(entries.astype(folded.dtype), mode="drop")
