"""Sequential inference: translate an image and its instances group by group (paper §2.3).

The masks are ordered largest first and split into groups of `ins_per`; a `lax.scan` over the
groups translates the current image with the next group, so one compiled body serves any number of
instances and memory does not grow with it. A sample whose group has no valid instance keeps its
current image for that group and its empty slots stay -1.

`translate` also reconstructs (the reference's test visuals); `translate_forward` is the forward-only
path of `instagan translate`: the host pads the slots to a bucketed number of groups, an image
without instances is translated as an empty set, and groups of padding are skipped at run time.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from instagan_jax.methods.instagan.networks import SetGenerator
from instagan_jax.nn import instances
from instagan_jax.nn.instances import merge_masks


class Translation(NamedTuple):
    """Outputs of a sequential translation (masks in selection order: largest first)."""

    fake_img: jax.Array  # (B,H,W,C) after the last group
    fake_masks: jax.Array  # (B,G*N,H,W,1) translated masks
    rec_img: jax.Array  # (B,H,W,C) reconstruction after the first group (the reference's visual)
    rec_masks: jax.Array  # (B,G*N,H,W,1) reconstructed masks
    fake_union: jax.Array  # (B,H,W,1) union of the translated masks
    rec_union: jax.Array  # (B,H,W,1) union of the reconstructed masks


def _translate_group(forward: SetGenerator, current: jax.Array, masks: jax.Array, valid: jax.Array,
                     runs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One group: (next image: the translated one where `runs` (B,), else `current`; translated image; masks)."""
    fake_img, fake_masks = forward(current, masks, valid)
    return jnp.where(runs[:, None, None, None], fake_img, current), fake_img, fake_masks


def _translate_groups(forward: SetGenerator, backward: SetGenerator, img: jax.Array,
                      group_masks: jax.Array, group_valid: jax.Array):
    """Scan over (G,B,N,...) mask groups; returns the final image and per-group outputs."""

    def step(current, group):
        masks, valid = group
        next_img, fake_img, fake_masks = _translate_group(forward, current, masks, valid, jnp.any(valid, axis=1))
        rec_img, rec_masks = backward(fake_img, fake_masks, valid)
        return next_img, (fake_masks, rec_img, rec_masks)

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


def bucket_groups(n_instances: int, ins_per: int) -> int:
    """Number of groups the compiled forward scan runs for `n_instances`: ceil(n / ins_per), at least
    one, rounded up to a power of two, so that one compilation serves every count up to it (a run
    compiles at most log2 + 1 times); the padded groups hold no instance and are skipped at run time."""
    needed = max(1, -(-n_instances // ins_per))
    return 1 << (needed - 1).bit_length()


def _forward_groups(forward: SetGenerator, img: jax.Array, group_masks: jax.Array, group_valid: jax.Array):
    """Forward-only scan over (G,B,N,...) groups: returns the final image and the (G,B,N,H,W,1) masks.

    The first group always runs, so an image without instances is translated with an empty set; a
    later group runs for the samples with a valid instance in it, and a group where none has one is
    skipped (`lax.cond`) with its empty slots passed through.
    """
    runs = jnp.any(group_valid, axis=2).at[0].set(True)

    def step(current, group):
        masks, valid, run = group

        def translate_group(current):
            next_img, _, fake_masks = _translate_group(forward, current, masks, valid, run)
            return next_img, fake_masks

        return jax.lax.cond(jnp.any(run), translate_group, lambda current: (current, masks), current)

    return jax.lax.scan(step, img, (group_masks, group_valid, runs))


@functools.partial(jax.jit, static_argnames="graphdef")
def forward_groups(graphdef, state, img: jax.Array, group_masks: jax.Array, group_valid: jax.Array):
    """The compiled forward-only translation: (final image (B,H,W,C), masks per group (G,B,N,H,W,1)).

    The image is the scan's carry and each group's masks a stacked output, so the working memory is
    one group's activations whatever the number of groups. Arguments: `forward_inputs`.
    """
    return _forward_groups(nnx.merge(graphdef, state), img, group_masks, group_valid)


def forward_inputs(forward: SetGenerator, img: jax.Array, masks: jax.Array, ins_per: int) -> tuple:
    """The arguments of `forward_groups` for images (B,H,W,C) and masks (B,K,H,W,1) in translation
    order: the K slots padded with empty ones to `bucket_groups(K, ins_per)` groups of `ins_per`."""
    padded = instances.pad_slots(jnp.asarray(masks), bucket_groups(masks.shape[1], ins_per) * ins_per)
    graphdef, state = nnx.split(forward)
    return (graphdef, state, jnp.asarray(img)) + instances.split_groups(padded, instances.mask_valid(padded), ins_per)


def translate_forward(forward: SetGenerator, img: jax.Array, masks: jax.Array,
                      *, ins_per: int) -> tuple[jax.Array, jax.Array]:
    """Translate images (B,H,W,C) and masks (B,K,H,W,1) with `forward` only, `ins_per` masks at a time.

    The masks are translated in the order given (order them largest first, as training does:
    `data.transforms.order_by_area`); any K, including 0 (the image alone is translated). Returns the
    final image (B,H,W,C) and the K translated masks (B,K,H,W,1), in the order given.
    """
    fake_img, fake_groups = forward_groups(*forward_inputs(forward, img, masks, ins_per))
    return fake_img, instances.merge_groups(fake_groups)[:, :masks.shape[1]]
