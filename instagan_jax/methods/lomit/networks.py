"""LOMIT's networks (Cho et al. 2019, docs: ../shared/docs/LOMIT.md), built from the paper's description.

- `ContentEncoder` E_c: 7x7 conv, two 4x4 stride-2 convs, residual blocks; instance norm, ReLU.
- `StyleEncoder` E_s: a trunk (7x7, two 4x4 stride-2 convs, LeakyReLU(0.01), no norm) and a head (two more
  4x4 stride-2 convs, global average pool, 1x1 conv) to a style code; separate foreground and background
  heads unless `model.shared_style_heads` (the public code's sharing).
- `MaskNetwork` M(c_in, c_ex): channel attention from the exemplar's content, then 3x3 conv + batch norm +
  ReLU layers and a 1x1 conv with a sigmoid: a soft mask at 1/4 resolution.
- `hadain`: Highway AdaIN, the foreground AdaIN where the mask is 1, the background one where it is 0.
- `Decoder`: residual blocks with layer norm, two nearest x2 upsamplings with 5x5 convs, a 7x7 tanh head.
- `Discriminator`: StarGAN's: 4x4 stride-2 convs with LeakyReLU(0.01), a patch `src` head and an
  attribute `cls` head.

Generator convs are reflection-padded; the discriminator's are zero-padded, as StarGAN's. Every layer
starts from PyTorch's default init (uniform +-1/sqrt(fan_in)): with the N(0, 0.02) init of the
InstaGAN family the style codes start near 0 and the style losses are met by constant codes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from instagan_jax.methods.lomit.config import LomitModel
from instagan_jax.nn import layers
from instagan_jax.nn.modules import (
    BatchNorm,
    Conv,
    ResnetBlock,
    torch_default_init,
)

INIT = "torch"  # PyTorch's default init for every layer (the public code builds on MUNIT and StarGAN)
LEAKY_SLOPE = 0.01
LAYER_NORM_EPS = 1e-5
MLP_WIDTH = 256


def leaky(x: jax.Array) -> jax.Array:
    return layers.leaky_relu(x, LEAKY_SLOPE)


def reflect_pad(x: jax.Array, pad: int) -> jax.Array:
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")


class DownConv(nnx.Module):
    """4x4 stride-2 conv on a 1-pixel reflection-padded input: H x W -> H/2 x W/2."""

    def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs):
        self.conv = Conv(in_ch, out_ch, 4, stride=2, init=INIT, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.conv(reflect_pad(x, 1))


class ContentEncoder(nnx.Module):
    """Image -> content c with 4*ngf channels at 1/4 resolution."""

    def __init__(self, model: LomitModel, *, rngs: nnx.Rngs):
        ngf = model.ngf
        self.stem = Conv(model.image_channels, ngf, 7, padding=3, pad_mode="reflect", init=INIT, rngs=rngs)
        self.down = nnx.List([DownConv(ngf, 2 * ngf, rngs=rngs), DownConv(2 * ngf, 4 * ngf, rngs=rngs)])
        self.blocks = nnx.List([ResnetBlock(4 * ngf, init=INIT, rngs=rngs) for _ in range(model.n_blocks)])

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jax.nn.relu(layers.instance_norm(self.stem(x)))
        for conv in self.down:
            x = jax.nn.relu(layers.instance_norm(conv(x)))
        for block in self.blocks:
            x = block(x)
        return x


class StyleHead(nnx.Module):
    """Trunk features -> a style code: two 4x4 stride-2 convs, global average pool, 1x1 conv."""

    def __init__(self, width: int, style_dim: int, *, rngs: nnx.Rngs):
        self.down = nnx.List([DownConv(width, width, rngs=rngs), DownConv(width, width, rngs=rngs)])
        self.out = Conv(width, style_dim, 1, init=INIT, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.down:
            x = leaky(conv(x))
        pooled = jnp.mean(x, axis=(1, 2), keepdims=True)
        return self.out(pooled)[:, 0, 0, :]


class StyleEncoder(nnx.Module):
    """A masked image -> its foreground (`part`="fg") or background ("bg") style code (B, style_dim)."""

    def __init__(self, model: LomitModel, *, rngs: nnx.Rngs):
        ngf = model.ngf
        self.stem = Conv(model.image_channels, ngf, 7, padding=3, pad_mode="reflect", init=INIT, rngs=rngs)
        self.down = nnx.List([DownConv(ngf, 2 * ngf, rngs=rngs), DownConv(2 * ngf, 4 * ngf, rngs=rngs)])
        self.fg = StyleHead(4 * ngf, model.style_dim, rngs=rngs)
        self.bg = None if model.shared_style_heads else StyleHead(4 * ngf, model.style_dim, rngs=rngs)

    def __call__(self, x: jax.Array, part: str) -> jax.Array:
        x = leaky(self.stem(x))
        for conv in self.down:
            x = leaky(conv(x))
        head = self.fg if part == "fg" or self.bg is None else self.bg
        return head(x)


class Linear(nnx.Module):
    """A dense layer with PyTorch's default init (uniform +-1/sqrt(fan_in) weights and bias)."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        self.kernel = nnx.Param(torch_default_init(rngs, (in_features, out_features), in_features))
        self.bias = nnx.Param(torch_default_init(rngs, (out_features,), in_features))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.kernel[...] + self.bias[...]


class MaskNetwork(nnx.Module):
    """M(c_in, c_ex): the soft mask (B, H/4, W/4, 1) in (0, 1) of the input's content `c_in`, attending to
    the channels the exemplar's content `c_ex` holds (co-segmentation)."""

    def __init__(self, model: LomitModel, *, rngs: nnx.Rngs):
        width = 4 * model.ngf
        self.squeeze = Linear(width, 2 * width, rngs=rngs)
        self.excite = Linear(2 * width, width, rngs=rngs)
        self.convs = nnx.List([Conv(width, width, 3, padding=1, pad_mode="reflect", init=INIT, rngs=rngs)
                               for _ in range(model.mask_layers)])
        self.norms = nnx.List([BatchNorm(width, rngs=rngs) for _ in range(model.mask_layers)])
        self.out = Conv(width, 1, 1, init=INIT, rngs=rngs)

    def __call__(self, c_in: jax.Array, c_ex: jax.Array, train: bool) -> jax.Array:
        pooled = jnp.mean(c_ex, axis=(1, 2))
        attention = jax.nn.sigmoid(self.excite(jnp.tanh(self.squeeze(pooled))))
        x = c_in * attention[:, None, None, :]
        for conv, norm in zip(self.convs, self.norms):
            x = jax.nn.relu(norm(conv(x), train))
        return jax.nn.sigmoid(self.out(x))


class StyleMLP(nnx.Module):
    """A style code -> AdaIN's per-channel (mean, std): style_dim -> 256, LeakyReLU -> 2 x channels
    (mean and log-variance; std = exp(logvar / 2))."""

    def __init__(self, style_dim: int, channels: int, *, rngs: nnx.Rngs):
        self.hidden = Linear(style_dim, MLP_WIDTH, rngs=rngs)
        self.out = Linear(MLP_WIDTH, 2 * channels, rngs=rngs)

    def __call__(self, style: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean, logvar = jnp.split(self.out(leaky(self.hidden(style))), 2, axis=-1)
        return mean, jnp.exp(0.5 * logvar)


def adain(content: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """AdaIN: the content normalised per sample and channel over H, W, then scaled by `std` and shifted
    by `mean` ((B, C) each)."""
    return std[:, None, None, :] * layers.instance_norm(content) + mean[:, None, None, :]


def hadain(mask: jax.Array, content: jax.Array, foreground: tuple[jax.Array, jax.Array],
           background: tuple[jax.Array, jax.Array]) -> jax.Array:
    """Highway AdaIN: m * AdaIN(c, fg style) + (1 - m) * AdaIN(c, bg style); styles as (mean, std)."""
    return mask * adain(content, *foreground) + (1.0 - mask) * adain(content, *background)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """GroupNorm(1): per sample over H, W and C, then a per-channel affine."""
    mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
    centered = x - mean
    var = jnp.mean(jnp.square(centered), axis=(1, 2, 3), keepdims=True)
    return centered * jax.lax.rsqrt(var + LAYER_NORM_EPS) * scale + bias


class LayerNorm(nnx.Module):
    def __init__(self, channels: int):
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        return layer_norm(x, self.scale[...], self.bias[...])


class LayerNormBlock(nnx.Module):
    """x + LN(conv(relu(LN(conv(x))))) with reflection-padded 3x3 convs."""

    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv1 = Conv(channels, channels, 3, padding=1, pad_mode="reflect", init=INIT, rngs=rngs)
        self.norm1 = LayerNorm(channels)
        self.conv2 = Conv(channels, channels, 3, padding=1, pad_mode="reflect", init=INIT, rngs=rngs)
        self.norm2 = LayerNorm(channels)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(h))


class UpConv(nnx.Module):
    """Nearest x2 upsampling, a 5x5 conv, layer norm, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs):
        self.conv = Conv(in_ch, out_ch, 5, padding=2, pad_mode="reflect", init=INIT, rngs=rngs)
        self.norm = LayerNorm(out_ch)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return jax.nn.relu(self.norm(self.conv(x)))


class Decoder(nnx.Module):
    """Stylised content (4*ngf channels, 1/4 resolution) -> image in [-1, 1]."""

    def __init__(self, model: LomitModel, *, rngs: nnx.Rngs):
        ngf = model.ngf
        self.blocks = nnx.List([LayerNormBlock(4 * ngf, rngs=rngs) for _ in range(model.n_blocks)])
        self.up = nnx.List([UpConv(4 * ngf, 2 * ngf, rngs=rngs), UpConv(2 * ngf, ngf, rngs=rngs)])
        self.head = Conv(ngf, model.image_channels, 7, padding=3, pad_mode="reflect", init=INIT, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self.blocks:
            x = block(x)
        for up in self.up:
            x = up(x)
        return jnp.tanh(self.head(x))


def upsample_mask(mask: jax.Array, height: int, width: int) -> jax.Array:
    """A 1/4-resolution mask (B, h, w, 1) bilinearly resized to the image's (B, H, W, 1)."""
    return jax.image.resize(mask, (mask.shape[0], height, width, 1), "bilinear")


class Generator(nnx.Module):
    """All of LOMIT's generator side: E_c, E_s, M, the fg and bg AdaIN MLPs and the decoder."""

    def __init__(self, model: LomitModel, *, rngs: nnx.Rngs):
        self.content = ContentEncoder(model, rngs=rngs)
        self.style = StyleEncoder(model, rngs=rngs)
        self.mask = MaskNetwork(model, rngs=rngs)
        self.fg_mlp = StyleMLP(model.style_dim, 4 * model.ngf, rngs=rngs)
        self.bg_mlp = StyleMLP(model.style_dim, 4 * model.ngf, rngs=rngs)
        self.decoder = Decoder(model, rngs=rngs)

    def fg_style(self, image: jax.Array, mask: jax.Array) -> jax.Array:
        """The foreground style code of an image under its 1/4-resolution mask: E_s^f(up(m) * x)."""
        return self.style(upsample_mask(mask, image.shape[1], image.shape[2]) * image, "fg")

    def bg_style(self, image: jax.Array, mask: jax.Array) -> jax.Array:
        """The background style code: E_s^b(up(1 - m) * x)."""
        return self.style((1.0 - upsample_mask(mask, image.shape[1], image.shape[2])) * image, "bg")

    def __call__(self, image: jax.Array, exemplar: jax.Array, mask: jax.Array | None = None,
                 train: bool = False) -> dict[str, jax.Array]:
        """`image` with `exemplar`'s foreground style: {'output', 'mask' (the input's, 1/4 resolution),
        'exemplar_mask', 'content'}. A given `mask` (B, H/4, W/4, 1) replaces the learned one (the paper's
        user intervention); the exemplar's mask is always the learned one."""
        content, exemplar_content = self.content(image), self.content(exemplar)
        learned = self.mask(content, exemplar_content, train)
        exemplar_mask = self.mask(exemplar_content, content, train)
        mask = learned if mask is None else mask
        output = self.render(mask, content, self.fg_style(exemplar, exemplar_mask), self.bg_style(image, mask))
        return {"output": output, "mask": mask, "exemplar_mask": exemplar_mask, "content": content}

    def stylise(self, mask: jax.Array, content: jax.Array, fg_style: jax.Array, bg_style: jax.Array) -> jax.Array:
        """HAdaIN of `content` with a foreground and a background style code: the decoder's input."""
        return hadain(mask, content, self.fg_mlp(fg_style), self.bg_mlp(bg_style))

    def render(self, mask: jax.Array, content: jax.Array, fg_style: jax.Array, bg_style: jax.Array) -> jax.Array:
        """The decoded `stylise`: an image in [-1, 1]."""
        return self.decoder(self.stylise(mask, content, fg_style, bg_style))


@dataclasses.dataclass(frozen=True)
class SizedModel(LomitModel):
    """The model section plus the training image size (the discriminator's attribute head spans its
    last feature map, as StarGAN's)."""

    height: int = 128
    width: int = 128


def sized_model(model: LomitModel, height: int, width: int) -> SizedModel:
    return SizedModel(**dataclasses.asdict(model), height=height, width=width)


class Discriminator(nnx.Module):
    """StarGAN's discriminator: image -> (src patch scores (B, h, w, 1), attribute logits (B, C)).

    The attribute head is a conv whose kernel covers the whole last map (H / 2^d_layers), no bias.
    PyTorch's default init, as StarGAN's."""

    def __init__(self, model: SizedModel, *, rngs: nnx.Rngs):
        channels = [model.image_channels] + [model.ndf * 2**i for i in range(model.d_layers)]
        self.convs = nnx.List([Conv(a, b, 4, stride=2, padding=1, init="torch", rngs=rngs)
                               for a, b in zip(channels[:-1], channels[1:])])
        self.src = Conv(channels[-1], 1, 3, padding=1, init="torch", rngs=rngs)
        height, width = model.height // 2**model.d_layers, model.width // 2**model.d_layers
        shape = (height, width, channels[-1], model.n_attributes)
        self.cls = nnx.Param(torch_default_init(rngs, shape, height * width * channels[-1]))

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        for conv in self.convs:
            x = leaky(conv(x))
        return self.src(x), jnp.einsum("bhwc,hwcn->bn", x, self.cls[...])
