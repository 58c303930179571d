"""InstaGAN's set generator and set discriminator as Flax NNX modules.

Both take an image `(B,H,W,C)`, instance masks `(B,K,H,W,1)` in [-1, 1] and `valid (B,K)`.
The mask branch runs once over all B*K masks and the set feature is a per-sample sum over the valid
instances, so the image output is invariant and the mask outputs equivariant to the instance order,
and a batch of B equals B batch-1 calls.

A sample with zero valid instances has an empty set: its set feature is zero (the sum over nothing),
its image is decoded from the image feature and that zero set feature, and all its mask slots pass
through unchanged. (The reference instead forces the all -1 channel 0 through the mask encoder.)

Under the packed instance layout (`InstaganModel.instance_layout`), a generator call whose valid slots
fit the bucket runs its mask branch on the bucket's entries only and sums them per sample with a segment
sum: the same numbers without the work on empty slots. A call with more valid slots runs padded
(`lax.cond`). The discriminator's mask branch (three strided convs, a small share of its cost) stays
padded: packed, it was no faster in the training iteration (docs/BENCHMARKS.md section 11).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from instagan_jax.methods.instagan.config import InstaganModel
from instagan_jax.nn import instances, layers
from instagan_jax.nn.build import ModelConfig, ResnetModel
from instagan_jax.nn.modules import (
    Decoder,
    Encoder,
    SNConv,
    instance_norm,
    network_output,
)


def fold_instances(x: jax.Array) -> jax.Array:
    """(B, K, ...) -> (B*K, ...)."""
    return x.reshape((-1,) + x.shape[2:])


def unfold_instances(x: jax.Array, batch: int) -> jax.Array:
    """(B*K, ...) -> (B, K, ...)."""
    return x.reshape((batch, -1) + x.shape[1:])


def set_sum(features: jax.Array, valid: jax.Array) -> jax.Array:
    """Per-sample sum of instance features (B,K,h,w,C) over the valid slots -> (B,h,w,C)."""
    return jnp.sum(jnp.where(valid[:, :, None, None, None], features, 0.0), axis=1)


def pack_fraction_of(config: ModelConfig) -> float | None:
    """The packed layout's bucket share of a call's slots; None for the padded layout (and for a model
    section without the layout keys, e.g. a plain `ResnetModel`)."""
    return config.packed_fraction if isinstance(config, InstaganModel) else None


def packed_or_padded(pack_fraction: float | None, valid: jax.Array, padded, packed):
    """`padded()`, or `packed(bucket)` when the packed layout is on and the valid slots fit its bucket."""
    if pack_fraction is None:
        return padded()
    capacity = instances.bucket_capacity(valid.size, pack_fraction)
    if capacity >= valid.size:
        return padded()
    bucket = instances.pack(valid, capacity)
    return jax.lax.cond(instances.fits(valid, capacity), lambda: packed(bucket), padded)


class SetGenerator(nnx.Module):
    """The reference's ResnetSetGenerator: translates an image and its set of instance masks."""

    def __init__(self, config: ResnetModel, *, rngs: nnx.Rngs):
        ngf, c = config.ngf, config.image_channels
        self.encoder_img = Encoder(c, ngf, config.n_blocks, rngs=rngs)
        self.encoder_seg = Encoder(1, ngf, config.n_blocks, rngs=rngs)
        self.decoder_img = Decoder(2 * ngf, c, upsample=config.upsample, rngs=rngs)
        self.decoder_seg = Decoder(3 * ngf, 1, upsample=config.upsample, rngs=rngs)
        self.pack_fraction = pack_fraction_of(config)

    def __call__(self, img: jax.Array, masks: jax.Array,
                 valid: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(B,H,W,C), (B,K,H,W,1), (B,K) -> translated image (B,H,W,C) and masks (B,K,H,W,1)."""
        e_img = self.encoder_img(img)
        e_set, masks_out = packed_or_padded(
            self.pack_fraction, valid, lambda: self._mask_branch_padded(e_img, masks, valid),
            lambda bucket: self._mask_branch_packed(e_img, masks, bucket))
        img_out = self.decoder_img(jnp.concatenate([e_img, e_set], axis=-1))
        return img_out, masks_out

    def _mask_branch_padded(self, e_img: jax.Array, masks: jax.Array, valid: jax.Array):
        """(set feature (B,h,w,C), translated masks) with the mask branch on all B*K slots."""
        batch, k = masks.shape[:2]
        e_seg = unfold_instances(self.encoder_seg(fold_instances(masks)), batch)
        e_set = set_sum(e_seg, valid)
        context = jnp.broadcast_to(jnp.concatenate([e_img, e_set], axis=-1)[:, None],
                                   (batch, k) + e_img.shape[1:3] + (2 * e_img.shape[-1],))
        seg_in = jnp.concatenate([e_seg, context], axis=-1)
        masks_out = unfold_instances(self.decoder_seg(fold_instances(seg_in)), batch)
        return e_set, jnp.where(valid[:, :, None, None, None], masks_out, masks)

    def _mask_branch_packed(self, e_img: jax.Array, masks: jax.Array, bucket: instances.Bucket):
        """The same with the mask branch on the bucket's entries only (slots outside it pass through)."""
        folded = fold_instances(masks)
        e_seg = self.encoder_seg(instances.gather_entries(folded, bucket))
        e_set = instances.segment_sum(e_seg, bucket)
        context = jnp.take(jnp.concatenate([e_img, e_set], axis=-1), bucket.sample, axis=0, mode="clip")
        entries_out = self.decoder_seg(jnp.concatenate([e_seg, context], axis=-1))
        masks_out = instances.scatter_entries(folded, entries_out, bucket)
        return e_set, unfold_instances(masks_out, masks.shape[0])


class FeatureExtractor(nnx.Module):
    """Three SN convs (4x4, stride 2): C -> 4*ndf at H/8 x W/8; no norm on the first."""

    def __init__(self, in_ch: int, ndf: int, *, rngs: nnx.Rngs):
        self.conv1 = SNConv(in_ch, ndf, stride=2, rngs=rngs)
        self.conv2 = SNConv(ndf, 2 * ndf, stride=2, rngs=rngs)
        self.conv3 = SNConv(2 * ndf, 4 * ndf, stride=2, rngs=rngs)

    def __call__(self, x: jax.Array, used: jax.Array) -> jax.Array:
        """x (B,K,H,W,C), used (K,): slot k sees the sigmas of the k-th power-iteration step."""
        batch, k = x.shape[:2]
        h = fold_instances(x)
        for i, conv in enumerate((self.conv1, self.conv2, self.conv3)):
            sigma = jnp.tile(conv.sigmas(used), batch)[:, None, None, None]
            h = conv(h, sigma)
            if i > 0:
                h = instance_norm(h)
            h = layers.leaky_relu(h)
        return unfold_instances(h, batch)


class SetDiscriminator(nnx.Module):
    """The reference's NLayerSetDiscriminator (3 layers, spectral norm, LSGAN scores)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        ndf = config.ndf
        self.feature_img = FeatureExtractor(config.image_channels, ndf, rngs=rngs)
        self.feature_seg = FeatureExtractor(1, ndf, rngs=rngs)
        self.classifier1 = SNConv(8 * ndf, 16 * ndf, stride=1, rngs=rngs)
        self.classifier2 = SNConv(16 * ndf, 1, stride=1, rngs=rngs)

    def __call__(self, img: jax.Array, masks: jax.Array, valid: jax.Array) -> jax.Array:
        """(B,H,W,C), (B,K,H,W,1), (B,K) -> scores (B, H/8-2, W/8-2, 1).

        The mask branch's u, v advance once per slot that is valid in any sample, in slot order.
        """
        one = jnp.ones((1,), bool)
        f_img = self.feature_img(img[:, None], one)[:, 0]
        f_set = set_sum(self.feature_seg(masks, jnp.any(valid, axis=0)), valid)
        h = jnp.concatenate([f_img, f_set], axis=-1)
        h = layers.leaky_relu(instance_norm(self.classifier1(h, self.classifier1.sigmas(one))))
        return network_output(self, self.classifier2(h, self.classifier2.sigmas(one)))
