"""InstaGAN's set generator and set discriminator as Flax NNX modules.

Both take an image `(B,H,W,C)`, instance masks `(B,K,H,W,1)` in [-1, 1] and `valid (B,K)`.
The mask branch runs once over all B*K masks and the set feature is a per-sample sum over the valid
instances, so the image output is invariant and the mask outputs equivariant to the instance order,
and a batch of B equals B batch-1 calls.

A sample with zero valid instances has an empty set: its set feature is zero (the sum over nothing),
its image is decoded from the image feature and that zero set feature, and all its mask slots pass
through unchanged. (The reference instead forces the all -1 channel 0 through the mask encoder.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from instagan_jax import layers


class SpectralVector(nnx.Variable):
    """A spectral-norm power-iteration vector (u or v): state, never trained."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of both generators and discriminators (reference defaults)."""

    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    image_channels: int = 3
    dtype: str = "float32"  # parameters and compute; "float64" for exact comparisons (needs x64)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")


DTYPES = {"float32": jnp.float32, "float64": jnp.float64}


def x64_scope(dtype: str):
    """A context enabling JAX's 64-bit types for a float64 model (and leaving them as they are otherwise)."""
    return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


def _normal_init(rngs: nnx.Rngs, shape: tuple[int, ...], std: float = 0.02) -> jax.Array:
    return std * jax.random.normal(rngs.params(), shape, jnp.float32)


def _torch_default_init(rngs: nnx.Rngs, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound)


class Conv(nnx.Module):
    """Conv2d with bias; kernel HWIO, N(0, 0.02) init and zero bias as the reference's generator."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, pad_mode: str = "zeros", rngs: nnx.Rngs):
        self.kernel = nnx.Param(_normal_init(rngs, (kernel_size, kernel_size, in_ch, out_ch)))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32))
        self.stride, self.padding, self.pad_mode = stride, padding, pad_mode

    def __call__(self, x: jax.Array) -> jax.Array:
        return layers.conv2d(x, self.kernel[...], self.bias[...], stride=self.stride,
                             padding=self.padding, pad_mode=self.pad_mode)


class ConvTranspose(nnx.Module):
    """ConvTranspose2d(k=3, s=2, p=1, output_padding=1): doubles H and W."""

    def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_normal_init(rngs, (3, 3, in_ch, out_ch)))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return layers.conv_transpose2d_s2(x, self.kernel[...], self.bias[...])


class ResnetBlock(nnx.Module):
    """x + IN(conv(relu(IN(conv(x))))) with reflection-padded 3x3 convs."""

    def __init__(self, ch: int, *, rngs: nnx.Rngs):
        self.conv1 = Conv(ch, ch, 3, padding=1, pad_mode="reflect", rngs=rngs)
        self.conv2 = Conv(ch, ch, 3, padding=1, pad_mode="reflect", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(layers.instance_norm(self.conv1(x)))
        return x + layers.instance_norm(self.conv2(h))


class Encoder(nnx.Module):
    """7x7 stem, two stride-2 downsamplings, `n_blocks` residual blocks: C -> 4*ngf at H/4 x W/4."""

    def __init__(self, in_ch: int, ngf: int, n_blocks: int, *, rngs: nnx.Rngs):
        self.stem = Conv(in_ch, ngf, 7, padding=3, pad_mode="reflect", rngs=rngs)
        self.down1 = Conv(ngf, 2 * ngf, 3, stride=2, padding=1, rngs=rngs)
        self.down2 = Conv(2 * ngf, 4 * ngf, 3, stride=2, padding=1, rngs=rngs)
        self.blocks = nnx.List([ResnetBlock(4 * ngf, rngs=rngs) for _ in range(n_blocks)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in (self.stem, self.down1, self.down2):
            x = jax.nn.relu(layers.instance_norm(conv(x)))
        for block in self.blocks:
            x = block(x)
        return x


class Decoder(nnx.Module):
    """Two stride-2 upsamplings and a 7x7 tanh head: 4*width -> out_ch at 4x the resolution."""

    def __init__(self, width: int, out_ch: int, *, rngs: nnx.Rngs):
        self.up1 = ConvTranspose(4 * width, 2 * width, rngs=rngs)
        self.up2 = ConvTranspose(2 * width, width, rngs=rngs)
        self.head = Conv(width, out_ch, 7, padding=3, pad_mode="reflect", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(layers.instance_norm(self.up1(x)))
        x = jax.nn.relu(layers.instance_norm(self.up2(x)))
        return jnp.tanh(self.head(x))


def fold_instances(x: jax.Array) -> jax.Array:
    """(B, K, ...) -> (B*K, ...)."""
    return x.reshape((-1,) + x.shape[2:])


def unfold_instances(x: jax.Array, batch: int) -> jax.Array:
    """(B*K, ...) -> (B, K, ...)."""
    return x.reshape((batch, -1) + x.shape[1:])


def set_sum(features: jax.Array, valid: jax.Array) -> jax.Array:
    """Per-sample sum of instance features (B,K,h,w,C) over the valid slots -> (B,h,w,C)."""
    return jnp.sum(jnp.where(valid[:, :, None, None, None], features, 0.0), axis=1)


class SetGenerator(nnx.Module):
    """The reference's ResnetSetGenerator: translates an image and its set of instance masks."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        ngf, c = config.ngf, config.image_channels
        self.encoder_img = Encoder(c, ngf, config.n_blocks, rngs=rngs)
        self.encoder_seg = Encoder(1, ngf, config.n_blocks, rngs=rngs)
        self.decoder_img = Decoder(2 * ngf, c, rngs=rngs)
        self.decoder_seg = Decoder(3 * ngf, 1, rngs=rngs)

    def __call__(self, img: jax.Array, masks: jax.Array,
                 valid: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(B,H,W,C), (B,K,H,W,1), (B,K) -> translated image (B,H,W,C) and masks (B,K,H,W,1)."""
        batch, k = masks.shape[:2]
        e_img = self.encoder_img(img)
        e_seg = unfold_instances(self.encoder_seg(fold_instances(masks)), batch)
        e_set = set_sum(e_seg, valid)
        img_out = self.decoder_img(jnp.concatenate([e_img, e_set], axis=-1))
        context = jnp.broadcast_to(jnp.concatenate([e_img, e_set], axis=-1)[:, None],
                                   (batch, k) + e_img.shape[1:3] + (2 * e_img.shape[-1],))
        seg_in = jnp.concatenate([e_seg, context], axis=-1)
        masks_out = unfold_instances(self.decoder_seg(fold_instances(seg_in)), batch)
        masks_out = jnp.where(valid[:, :, None, None, None], masks_out, masks)
        return img_out, masks_out


class SNConv(nnx.Module):
    """A spectrally normalised conv with the reference's one-step power iteration per call.

    `sigmas(used)` advances u, v once per True entry of `used` (in order) and returns the sigma each
    entry sees; `__call__(x, sigma)` is then the conv with weight kernel / sigma. PyTorch's default
    init (uniform +-1/sqrt(fan_in) for kernel and bias) because the reference's init skips these convs.
    """

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, rngs: nnx.Rngs):
        fan_in = in_ch * 16
        self.kernel = nnx.Param(_torch_default_init(rngs, (4, 4, in_ch, out_ch), fan_in))
        self.bias = nnx.Param(_torch_default_init(rngs, (out_ch,), fan_in))
        self.u = SpectralVector(layers.l2_normalize(jax.random.normal(rngs.params(), (out_ch,))))
        self.v = SpectralVector(layers.l2_normalize(jax.random.normal(rngs.params(), (fan_in,))))
        self.stride = stride

    def sigmas(self, used: jax.Array) -> jax.Array:
        """Advance u, v once per used entry (K,) and return each entry's sigma (K,)."""
        kernel = self.kernel[...]

        def step(uv, use):
            u, v = uv
            new_u, new_v = layers.power_iteration(kernel, u, v)
            u, v = jnp.where(use, new_u, u), jnp.where(use, new_v, v)
            return (u, v), layers.spectral_sigma(kernel, u, v)

        (u, v), sigma = jax.lax.scan(step, (self.u[...], self.v[...]), used)
        self.u[...], self.v[...] = u, v
        return sigma

    def __call__(self, x: jax.Array, sigma: jax.Array) -> jax.Array:
        """Conv of x with kernel/sigma plus bias; sigma is a scalar or broadcasts against x."""
        y = layers.conv2d(x, self.kernel[...], stride=self.stride, padding=1)
        return y / sigma + self.bias[...]


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
                h = layers.instance_norm(h)
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
        h = layers.leaky_relu(layers.instance_norm(self.classifier1(h, self.classifier1.sigmas(one))))
        return self.classifier2(h, self.classifier2.sigmas(one))


@functools.partial(jax.jit, static_argnums=0)
def _apply_pure(graphdef: nnx.GraphDef, state: nnx.State, *args: jax.Array):
    module = nnx.merge(graphdef, state)
    return module(*args), nnx.state(module)


def apply(module: nnx.Module, *args: jax.Array):
    """Call a module compiled (jit), writing its new state (spectral-norm u, v) back into it."""
    graphdef, state = nnx.split(module)
    out, new_state = _apply_pure(graphdef, state, *args)
    nnx.update(module, new_state)
    return out


def _build(cls: type, config: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
    """`cls(config)` with every variable cast to `config.dtype`."""
    dtype = DTYPES[config.dtype]
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ValueError("model.dtype float64 needs JAX's 64-bit mode: run inside models.x64_scope('float64')")
    module = cls(config, rngs=rngs)
    nnx.update(module, jax.tree.map(lambda x: x.astype(dtype), nnx.state(module)))
    return module


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_state(cls: type, config: ModelConfig, key: jax.Array) -> nnx.State:
    return nnx.state(_build(cls, config, nnx.Rngs(params=key)))


def create(cls: type, config: ModelConfig, seed: int | jax.Array = 0):
    """A SetGenerator or SetDiscriminator with the reference's init, built in one compiled call.

    An int seed uses the 'rbg' PRNG, which XLA compiles ~4x faster than threefry for the ~50
    initializers. (Constructing the module directly works too but runs them eagerly, which is slow.)
    """
    key = jax.random.key(seed, impl="rbg") if isinstance(seed, int) else seed
    graphdef = nnx.graphdef(abstract(cls, config))
    return nnx.merge(graphdef, _init_state(cls, config, key))


def abstract(cls: type, config: ModelConfig):
    """A module with shapes but no values, to be filled (e.g. by `convert.load_reference`)."""
    return nnx.eval_shape(lambda: _build(cls, config, nnx.Rngs(0)))
