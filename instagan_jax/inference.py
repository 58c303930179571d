"""Sequential inference: translate an image and its instances group by group (paper §2.3).

The masks are ordered largest first and split into groups of `ins_per`; a `lax.scan` over the
groups translates the current image with the next group, so one compiled body serves any number of
instances and memory does not grow with it. A sample whose group has no valid instance keeps its
current image for that group and its empty slots stay -1.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from instagan_jax import instances
from instagan_jax.losses import merge_masks
from instagan_jax.models import SetGenerator


class Translation(NamedTuple):
    """Outputs of a sequential translation (masks in selection order: largest first)."""

    fake_img: jax.Array  # (B,H,W,C) after the last group
    fake_masks: jax.Array  # (B,G*N,H,W,1) translated masks
    rec_img: jax.Array  # (B,H,W,C) reconstruction after the first group (the reference's visual)
    rec_masks: jax.Array  # (B,G*N,H,W,1) reconstructed masks
    fake_union: jax.Array  # (B,H,W,1) union of the translated masks
    rec_union: jax.Array  # (B,H,W,1) union of the reconstructed masks


def _translate_groups(forward: SetGenerator, backward: SetGenerator, img: jax.Array,
                      group_masks: jax.Array, group_valid: jax.Array):
    """Scan over (G,B,N,...) mask groups; returns the final image and per-group outputs."""

    def step(current, group):
        masks, valid = group
        fake_img, fake_masks = forward(current, masks, valid)
        rec_img, rec_masks = backward(fake_img, fake_masks, valid)
        runs = jnp.any(valid, axis=1)[:, None, None, None]
        return jnp.where(runs, fake_img, current), (fake_masks, rec_img, rec_masks)

    return jax.lax.scan(step, img, (group_masks, group_valid))


@functools.partial(jax.jit, static_argnames=("graphdef", "ins_per"))
def _translate(graphdef, states, img, masks, valid, ins_per):
    forward, backward = nnx.merge(graphdef, states)
    group_masks, group_valid = instances.split_groups(masks, valid, ins_per)
    fake_img, (fake_groups, rec_imgs, rec_groups) = _translate_groups(
        forward, backward, img, group_masks, group_valid)
    fake_masks = instances.merge_groups(fake_groups)
    rec_masks = instances.merge_groups(rec_groups)
    return Translation(fake_img, fake_masks, rec_imgs[0], rec_masks,
                       merge_masks(fake_masks), merge_masks(rec_masks))


def translate(forward: SetGenerator, backward: SetGenerator, img: jax.Array, masks: jax.Array,
              *, ins_per: int = 2, ins_max: int | None = None) -> Translation:
    """Translate images (B,H,W,C) and masks (B,K,H,W,1) with `forward`; reconstruct with `backward`.

    Masks are ordered largest first and the `ins_max` largest are kept (default: all K, rounded up
    to a multiple of `ins_per` with empty slots). A slot is valid when any pixel is above -1.
    """
    if ins_max is None:
        ins_max = -(-masks.shape[1] // ins_per) * ins_per
    selected, valid = instances.select_largest(masks, ins_max)
    graphdef, states = nnx.split((forward, backward))
    return _translate(graphdef, states, img, selected, valid, ins_per)
