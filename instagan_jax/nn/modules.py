"""Flax NNX modules shared by the methods: convs, transposed convs and resize-convs, ResNet blocks and the ResNet
generator's encoder and decoder halves, spectrally normalised convs. Initialisation as the reference.

Mixed precision (`model.compute_dtype` bfloat16): `build` sets a `compute_dtype` attribute on every
module of a network (`set_compute_dtype`; absent = compute in the parameter dtype, today's graph).
Convs then cast their input, kernel and bias to it (activations stay bf16 between layers), instance and
batch norm compute their statistics in float32 and cast back, and each network casts what it returns
(images, masks, scores) to float32 for the losses. Parameters, spectral-norm u, v and sigma stay float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from instagan_jax.nn import layers

BATCH_NORM_MOMENTUM = 0.1


class SpectralVector(nnx.Variable):
    """A spectral-norm power-iteration vector (u or v): state, never trained."""


def set_compute_dtype(module: nnx.Module, name: str) -> None:
    """Make `module` and all its submodules compute in `name` (e.g. "bfloat16"): a static attribute."""
    for _, sub in nnx.iter_modules(module):
        sub.compute_dtype = name


def compute_dtype_of(module: nnx.Module) -> jnp.dtype | None:
    """The reduced compute dtype set on `module`, or None (compute in the parameter dtype)."""
    name = getattr(module, "compute_dtype", None)
    return None if name is None else jnp.dtype(name)


def to_compute(module: nnx.Module, *arrays: jax.Array | None) -> tuple[jax.Array | None, ...]:
    """`arrays` cast to the module's compute dtype (unchanged without one; None stays None)."""
    dtype = compute_dtype_of(module)
    if dtype is None:
        return arrays
    return tuple(None if a is None else a.astype(dtype) for a in arrays)


def network_output(module: nnx.Module, x: jax.Array) -> jax.Array:
    """What a network hands to the losses: float32 under a reduced compute dtype, else unchanged."""
    return x if compute_dtype_of(module) is None else x.astype(jnp.float32)


def _is_reduced(x: jax.Array) -> bool:
    return jnp.dtype(x.dtype).itemsize < 4 and jnp.issubdtype(x.dtype, jnp.floating)


def instance_norm(x: jax.Array) -> jax.Array:
    """`layers.instance_norm`; a bf16 (or f16) input is normalised in float32 and cast back."""
    if _is_reduced(x):
        return layers.instance_norm(x.astype(jnp.float32)).astype(x.dtype)
    return layers.instance_norm(x)


def normal_init(rngs: nnx.Rngs, shape: tuple[int, ...], std: float = 0.02) -> jax.Array:
    return std * jax.random.normal(rngs.params(), shape, jnp.float32)


def torch_default_init(rngs: nnx.Rngs, shape: tuple[int, ...], fan_in: int) -> jax.Array:
    bound = 1.0 / math.sqrt(fan_in)
    return jax.random.uniform(rngs.params(), shape, jnp.float32, -bound, bound)


class Conv(nnx.Module):
    """Conv2d with bias; kernel HWIO. `init` "normal": N(0, 0.02) kernel and zero bias, as the reference's
    generator; "torch": PyTorch's default, uniform +-1/sqrt(fan_in) for both (StarGAN's discriminator)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, pad_mode: str = "zeros", init: str = "normal", rngs: nnx.Rngs):
        shape = (kernel_size, kernel_size, in_ch, out_ch)
        if init == "normal":
            self.kernel = nnx.Param(normal_init(rngs, shape))
            self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32))
        elif init == "torch":
            fan_in = in_ch * kernel_size**2
            self.kernel = nnx.Param(torch_default_init(rngs, shape, fan_in))
            self.bias = nnx.Param(torch_default_init(rngs, (out_ch,), fan_in))
        else:
            raise ValueError(f"init must be 'normal' or 'torch', got {init!r}")
        self.stride, self.padding, self.pad_mode = stride, padding, pad_mode

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = to_compute(self, x, self.kernel[...], self.bias[...])
        return layers.conv2d(x, kernel, bias, stride=self.stride, padding=self.padding, pad_mode=self.pad_mode)


class ConvTranspose(nnx.Module):
    """ConvTranspose2d(k=3, s=2, p=1, output_padding=1): doubles H and W."""

    def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(normal_init(rngs, (3, 3, in_ch, out_ch)))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return layers.conv_transpose2d_s2(*to_compute(self, x, self.kernel[...], self.bias[...]))


class ResizeConv(nnx.Module):
    """Nearest-neighbour 2x upsampling, then a reflection-padded 3x3 conv: doubles H and W. Unlike the
    stride-2 transposed conv, every output pixel sees all nine taps, so no checkerboard pattern can form
    (Odena, Dumoulin and Olah, "Deconvolution and checkerboard artifacts", Distill 2016)."""

    def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs):
        self.conv = Conv(in_ch, out_ch, 3, padding=1, pad_mode="reflect", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))


# model.upsample -> the decoder's 2x upsampling layer ("transpose" is the reference's)
UPSAMPLERS = {"transpose": ConvTranspose, "resize": ResizeConv}


def check_resnet_gan_size(height: int, width: int) -> None:
    """ValueError unless (height, width) fits the ResNet generator and the 3-layer discriminators (the
    reference's): multiples of 4, since two stride-2 convs (each ceil(n/2)) and two 2x upsamplings must
    give the input size back; at least 24, so that the discriminators' last 4x4 convs (stride 1) still
    have a map to score (300x200: 300 -> 150 -> 75 -> 37 -> 36 -> 35)."""
    if height % 4 or width % 4 or min(height, width) < 24:
        raise ValueError(f"image size {height}x{width}: height and width must be multiples of 4 and at least 24 "
                         "(two stride-2 levels in the generator; the discriminators score a map of about "
                         "H/8 - 2 x W/8 - 2)")


class ResnetBlock(nnx.Module):
    """x + IN(conv(relu(IN(conv(x))))) with reflection-padded 3x3 convs."""

    def __init__(self, ch: int, *, init: str = "normal", rngs: nnx.Rngs):
        self.conv1 = Conv(ch, ch, 3, padding=1, pad_mode="reflect", init=init, rngs=rngs)
        self.conv2 = Conv(ch, ch, 3, padding=1, pad_mode="reflect", init=init, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(instance_norm(self.conv1(x)))
        return x + instance_norm(self.conv2(h))


class Encoder(nnx.Module):
    """7x7 stem, two stride-2 downsamplings, `n_blocks` residual blocks: C -> 4*ngf at H/4 x W/4."""

    def __init__(self, in_ch: int, ngf: int, n_blocks: int, *, rngs: nnx.Rngs):
        self.stem = Conv(in_ch, ngf, 7, padding=3, pad_mode="reflect", rngs=rngs)
        self.down1 = Conv(ngf, 2 * ngf, 3, stride=2, padding=1, rngs=rngs)
        self.down2 = Conv(2 * ngf, 4 * ngf, 3, stride=2, padding=1, rngs=rngs)
        self.blocks = nnx.List([ResnetBlock(4 * ngf, rngs=rngs) for _ in range(n_blocks)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in (self.stem, self.down1, self.down2):
            x = jax.nn.relu(instance_norm(conv(x)))
        for block in self.blocks:
            x = block(x)
        return x


class Decoder(nnx.Module):
    """Two 2x upsamplings (`UPSAMPLERS[upsample]`) and a 7x7 tanh head: 4*width -> out_ch at 4x the
    resolution (float32 from the head on under a reduced compute dtype)."""

    def __init__(self, width: int, out_ch: int, *, upsample: str = "transpose", rngs: nnx.Rngs):
        upsampler = UPSAMPLERS[upsample]
        self.up1 = upsampler(4 * width, 2 * width, rngs=rngs)
        self.up2 = upsampler(2 * width, width, rngs=rngs)
        self.head = Conv(width, out_ch, 7, padding=3, pad_mode="reflect", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(instance_norm(self.up1(x)))
        x = jax.nn.relu(instance_norm(self.up2(x)))
        return jnp.tanh(network_output(self, self.head(x)))


class SNConv(nnx.Module):
    """A spectrally normalised conv with the reference's one-step power iteration per call.

    `sigmas(used)` advances u, v once per True entry of `used` (in order) and returns the sigma each
    entry sees; `__call__(x, sigma)` is then the conv with weight kernel / sigma. PyTorch's default
    init (uniform +-1/sqrt(fan_in) for kernel and bias) because the reference's init skips these convs.
    Under a reduced compute dtype, u, v and sigma stay float32 (computed on the float32 kernel); a
    single sigma divides the float32 kernel before the cast, per-sample sigmas the float32-cast output.
    """

    def __init__(self, in_ch: int, out_ch: int, *, stride: int, bias: bool = True, rngs: nnx.Rngs):
        fan_in = in_ch * 16
        self.kernel = nnx.Param(torch_default_init(rngs, (4, 4, in_ch, out_ch), fan_in))
        self.bias = nnx.Param(torch_default_init(rngs, (out_ch,), fan_in)) if bias else None
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
        dtype = compute_dtype_of(self)
        bias = None if self.bias is None else self.bias[...]
        if dtype is None:
            y = layers.conv2d(x, self.kernel[...], stride=self.stride, padding=1) / sigma
            return y if bias is None else y + bias
        if jnp.size(sigma) == 1:  # one sigma: normalise the float32 kernel, then cast it
            kernel = self.kernel[...] / jnp.reshape(sigma, ())
            y = layers.conv2d(x.astype(dtype), kernel.astype(dtype), stride=self.stride, padding=1)
            return y if bias is None else y + bias.astype(dtype)
        y = layers.conv2d(x.astype(dtype), self.kernel[...].astype(dtype), stride=self.stride, padding=1)
        y = y.astype(jnp.float32) / sigma
        return (y if bias is None else y + bias).astype(dtype)

    def step(self, x: jax.Array) -> jax.Array:
        """One call of the reference's `SpectralNorm(conv)`: advance u, v once, then convolve."""
        return self(x, self.sigmas(jnp.ones((1,), bool))[0])


class BatchNorm(nnx.Module):
    """`BatchNorm2d` (affine, eps 1e-5, momentum 0.1) on NHWC, with the reference's N(1, 0.02) scale init.

    `train=True`: normalise with the batch's mean and biased variance, and move the running mean and
    (unbiased) variance 0.1 of the way towards them, as PyTorch does; `train=False`: use the running ones.
    A bf16 input is normalised in float32 (statistics, running ones float32) and the result cast back.
    """

    def __init__(self, ch: int, *, rngs: nnx.Rngs):
        self.scale = nnx.Param(1.0 + normal_init(rngs, (ch,)))
        self.bias = nnx.Param(jnp.zeros((ch,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((ch,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((ch,), jnp.float32))

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if _is_reduced(x):
            return self._normalise(x.astype(jnp.float32), train).astype(x.dtype)
        return self._normalise(x, train)

    def _normalise(self, x: jax.Array, train: bool) -> jax.Array:
        if train:
            mean = jnp.mean(x, axis=(0, 1, 2))
            var = jnp.mean(jnp.square(x - mean), axis=(0, 1, 2))
            n = x.size // x.shape[-1]
            self.mean[...] = (1 - BATCH_NORM_MOMENTUM) * self.mean[...] + BATCH_NORM_MOMENTUM * mean
            self.var[...] = ((1 - BATCH_NORM_MOMENTUM) * self.var[...]
                             + BATCH_NORM_MOMENTUM * var * n / max(n - 1, 1))
        else:
            mean, var = self.mean[...], self.var[...]
        return (x - mean) * jax.lax.rsqrt(var + layers.INSTANCE_NORM_EPS) * self.scale[...] + self.bias[...]
