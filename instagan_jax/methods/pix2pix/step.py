"""pix2pix (Isola et al., CVPR 2017) as the fork runs it: a U-Net generator, a batch-normalised
spectral-norm PatchGAN on (input, output) pairs, vanilla GAN (BCE on sigmoid scores) plus L1.

One iteration, in the reference's order: G translates A (train-mode batch norm, running statistics
move once); D takes an Adam step on 0.5 * (BCE(D(A, G(A)) constant, 0) + BCE(D(A, B), 1)); G takes
an Adam step on BCE(D'(A, G(A)), 1) + lambda_L1 * |G(A) - B| through the updated D'. Each of the
three D calls runs D in train mode: its running statistics and spectral-norm vectors move every time.
No image pool (the reference's pix2pix uses pool_size 0; `train.pool_size` is not read).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instagan_jax import optim
from instagan_jax.methods.base import ImageSpec
from instagan_jax.nn import layers
from instagan_jax.nn.build import DTYPES, ModelConfig, abstract, create
from instagan_jax.nn.modules import (
    BatchNorm,
    SpectralVector,
    network_output,
    to_compute,
)
from instagan_jax.nn.patchgan import PatchDiscriminator

NETWORKS = ("G", "D")
DROPOUT_RATE = 0.5
BCE_LOG_FLOOR = -100.0  # PyTorch's BCELoss clamps log terms at -100
D_CALLS_PER_STEP = 3  # fake and real in D's step, fake again in G's


# ----------------------------------------------------------------------------------------------
# Networks


class StridedConv(nnx.Module):
    """A 4x4 stride-2 padding-1 conv (halves H, W) or transposed conv (doubles them); N(0, 0.02) init."""

    def __init__(self, in_ch: int, out_ch: int, *, transposed: bool, bias: bool, rngs: nnx.Rngs):
        self.kernel = nnx.Param(0.02 * jax.random.normal(rngs.params(), (4, 4, in_ch, out_ch), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((out_ch,), jnp.float32)) if bias else None
        self.transposed = transposed

    def __call__(self, x: jax.Array) -> jax.Array:
        x, kernel, bias = to_compute(self, x, self.kernel[...], None if self.bias is None else self.bias[...])
        if self.transposed:
            return layers.conv_transpose2d_k4s2(x, kernel, bias)
        return layers.conv2d(x, kernel, bias, stride=2, padding=1)


def unet_widths(ngf: int, num_downs: int) -> list[int]:
    """Channels after each downsampling: ngf, 2 ngf, 4 ngf, then 8 ngf."""
    return [ngf * min(2 ** level, 8) for level in range(num_downs)]


def dropout_levels(num_downs: int) -> range:
    """Levels whose up path ends in dropout: the ngf*8 -> ngf*8 blocks between level 3 and the innermost."""
    return range(4, num_downs - 1)


class UnetGenerator(nnx.Module):
    """The reference's skip-connection U-Net with batch norm: (B,H,W,C) -> (B,H,W,out_ch) in [-1, 1].

    Level l (0 = outermost) downsamples with a 4x4 stride-2 conv; going back up, level l's transposed
    conv sees [level l's leaky-ReLU'd input, the level below's output] (the reference's in-place
    LeakyReLU also changes the tensor it concatenates). Norms after every down conv but the outermost
    and innermost, and after every up conv but the outermost; biases only on the outermost up conv.
    """

    def __init__(self, in_ch: int, out_ch: int, ngf: int, num_downs: int, *, dropout: bool, rngs: nnx.Rngs):
        if num_downs < 5:
            raise ValueError(f"the U-Net needs at least 5 downsamplings (images of 32 pixels or more), got {num_downs}")
        widths = unet_widths(ngf, num_downs)
        inner = num_downs - 1
        self.downs = nnx.List([StridedConv(in_ch if level == 0 else widths[level - 1], widths[level],
                                           transposed=False, bias=False, rngs=rngs) for level in range(num_downs)])
        self.down_norms = nnx.List([BatchNorm(widths[level], rngs=rngs) for level in range(1, inner)])
        self.ups = nnx.List([StridedConv(widths[level] * (1 if level == inner else 2),
                                         out_ch if level == 0 else widths[level - 1],
                                         transposed=True, bias=level == 0, rngs=rngs) for level in range(num_downs)])
        self.up_norms = nnx.List([BatchNorm(widths[level - 1], rngs=rngs) for level in range(1, num_downs)])
        self.num_downs, self.dropout = num_downs, dropout

    def __call__(self, x: jax.Array, train: bool = True, key: jax.Array | None = None) -> jax.Array:
        """`train`: batch statistics (moving the running ones) or running ones; `key` drives dropout."""
        if self.dropout and key is None and len(dropout_levels(self.num_downs)):
            raise ValueError("this U-Net has dropout: pass a PRNG key")
        inner = self.num_downs - 1
        skips, h = [], self.downs[0](x)
        for level in range(1, self.num_downs):
            h = layers.leaky_relu(h)
            skips.append(h)
            h = self.downs[level](h)
            if level < inner:
                h = self.down_norms[level - 1](h, train)
        for level in range(inner, 0, -1):
            h = self.up_norms[level - 1](self.ups[level](jax.nn.relu(h)), train)
            if self.dropout and level in dropout_levels(self.num_downs):
                keep = jax.random.bernoulli(jax.random.fold_in(key, level), 1.0 - DROPOUT_RATE, h.shape)
                h = jnp.where(keep, h / (1.0 - DROPOUT_RATE), 0.0).astype(h.dtype)
            h = jnp.concatenate([skips[level - 1], h], axis=-1)
        return jnp.tanh(network_output(self, self.ups[0](jax.nn.relu(h))))


def num_downs_for(height: int, width: int) -> int:
    """Downsamplings of the U-Net for an image size: log2 of the smaller side (unet_256 for 256)."""
    n = int(math.log2(min(height, width)))
    if height % 2 ** n or width % 2 ** n or n < 5:
        raise ValueError(f"image size {height}x{width}: the U-Net needs both sides divisible by "
                         f"2^log2(min side) and at least 32")
    return n


@dataclasses.dataclass(frozen=True)
class NetworkBuilder:
    """A hashable `(config, rngs=) -> module` for `build.create` / `build.abstract`: G or D of pix2pix."""

    name: str
    num_downs: int

    def __call__(self, config: ModelConfig, *, rngs: nnx.Rngs) -> nnx.Module:
        c = config.image_channels
        if self.name == "G":
            return UnetGenerator(c, c, config.ngf, self.num_downs, dropout=config.dropout, rngs=rngs)
        return PatchDiscriminator(2 * c, config.ndf, n_layers=3, norm="batch", sigmoid=True, rngs=rngs)


# ----------------------------------------------------------------------------------------------
# Spec and state


@dataclasses.dataclass(frozen=True)
class Spec(ImageSpec):
    """Everything static about an iteration (hashable: the jit cache key)."""

    def __post_init__(self) -> None:
        num_downs_for(self.height, self.width)  # ValueError for sizes the U-Net cannot take

    @property
    def num_downs(self) -> int:
        return num_downs_for(self.height, self.width)

    def builder(self, name: str) -> NetworkBuilder:
        return NetworkBuilder(name, self.num_downs)

    @functools.cached_property
    def graphdefs(self) -> dict[str, nnx.GraphDef]:
        return {name: nnx.graphdef(abstract(self.builder(name), self.model)) for name in NETWORKS}


@flax.struct.dataclass
class TrainState:
    """All that training changes: a pytree, checkpointed whole."""

    step: jax.Array  # iterations done
    params: dict[str, nnx.State]  # G, D trainable parameters
    batch_stats: dict[str, nnx.State]  # G, D BatchNorm running mean and variance
    batches_tracked: dict[str, jax.Array]  # G, D train-mode calls (PyTorch's num_batches_tracked)
    spectral: dict[str, nnx.State]  # D's spectral-norm vectors u, v
    opt: dict[str, Any]  # one Adam state per network
    rng: jax.Array  # raw threefry key data (uint32), for dropout


def split_network(module: nnx.Module) -> tuple[nnx.State, nnx.State, nnx.State]:
    """(parameters, running statistics, spectral vectors) of a G or D."""
    return nnx.state(module, nnx.Param), nnx.state(module, nnx.BatchStat), nnx.state(module, SpectralVector)


def state_from_networks(spec: Spec, networks: Mapping[str, nnx.Module],
                        batches_tracked: Mapping[str, int] | None = None, seed: int = 0) -> TrainState:
    """A train state at step 0 around given networks (e.g. imported from the reference)."""
    parts = {name: split_network(networks[name]) for name in NETWORKS}
    params = {name: parts[name][0] for name in NETWORKS}
    adam = optim.adam(spec.train)
    tracked = batches_tracked or {}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats={name: parts[name][1] for name in NETWORKS},
        batches_tracked={name: jnp.asarray(tracked.get(name, 0), jnp.int32) for name in NETWORKS},
        spectral={"D": parts["D"][2]},
        opt={name: adam.init(params[name]) for name in NETWORKS},
        rng=jax.random.key_data(jax.random.key(seed)),
    )


def create_network(spec: Spec, name: str, seed: int = 0) -> nnx.Module:
    """Network `name` (G or D) with the reference's init, as `init_state(spec, seed)` makes it."""
    return create(spec.builder(name), spec.model, seed * 2 + NETWORKS.index(name))


def init_state(spec: Spec, seed: int = 0) -> TrainState:
    """Fresh networks with the reference's init, zero Adam moments."""
    return state_from_networks(spec, {name: create_network(spec, name, seed) for name in NETWORKS}, seed=seed)


def modules(spec: Spec, state: TrainState) -> dict[str, nnx.Module]:
    """The networks of a state as NNX modules, by name."""
    return {"G": nnx.merge(spec.graphdefs["G"], state.params["G"], state.batch_stats["G"]),
            "D": nnx.merge(spec.graphdefs["D"], state.params["D"], state.batch_stats["D"], state.spectral["D"])}


# ----------------------------------------------------------------------------------------------
# Losses and the training step


def bce(probabilities: jax.Array, target: float) -> jax.Array:
    """`nn.BCELoss` against a constant 0 or 1 target, log terms clamped at -100 as PyTorch does."""
    p = probabilities if target == 1.0 else 1.0 - probabilities
    return -jnp.mean(jnp.maximum(jnp.log(p), BCE_LOG_FLOOR))


def _discriminate(spec: Spec, params: nnx.State, variables: tuple[nnx.State, nnx.State],
                  inputs: jax.Array, outputs: jax.Array):
    """D's train-mode scores of (inputs, outputs) pairs, and its moved (running stats, spectral vectors)."""
    module = nnx.merge(spec.graphdefs["D"], params, *variables, copy=True)
    scores = module(jnp.concatenate([inputs, outputs], axis=-1), True)
    return scores, (nnx.state(module, nnx.BatchStat), nnx.state(module, SpectralVector))


def _discriminator_loss(spec: Spec, params, variables, real_a, fake_b, real_b):
    fake_scores, variables = _discriminate(spec, params, variables, real_a, fake_b)
    real_scores, variables = _discriminate(spec, params, variables, real_a, real_b)
    d_fake, d_real = bce(fake_scores, 0.0), bce(real_scores, 1.0)
    return 0.5 * (d_fake + d_real), (d_fake, d_real, variables)


def _generator_loss(spec: Spec, fake_b, d_params, variables, real_a, real_b):
    scores, variables = _discriminate(spec, d_params, variables, real_a, fake_b)
    g_gan = bce(scores, 1.0)
    g_l1 = spec.loss.lambda_L1 * jnp.mean(jnp.abs(fake_b - real_b))
    return g_gan + g_l1, (g_gan, g_l1, variables)


def train_step(spec: Spec, state: TrainState, batch: Mapping[str, jax.Array]):
    """One iteration on a batch (img_A input, img_B target; NHWC in [-1, 1]) -> (state, metrics, visuals)."""
    dtype = DTYPES[spec.model.dtype]
    real_a, real_b = batch["img_A"].astype(dtype), batch["img_B"].astype(dtype)
    rng, dropout_key = jax.random.split(jax.random.wrap_key_data(state.rng))
    lr = optim.learning_rate(spec.train, spec.iters_per_epoch, state.step)

    def generate(g_params):
        module = nnx.merge(spec.graphdefs["G"], g_params, state.batch_stats["G"], copy=True)
        return module(real_a, True, dropout_key), nnx.state(module, nnx.BatchStat)

    fake_b, generator_vjp, g_stats = jax.vjp(generate, state.params["G"], has_aux=True)

    d_variables = (state.batch_stats["D"], state.spectral["D"])
    (_, (d_fake, d_real, d_variables)), d_grads = jax.value_and_grad(
        _discriminator_loss, argnums=1, has_aux=True)(
            spec, state.params["D"], d_variables, real_a, jax.lax.stop_gradient(fake_b), real_b)
    d_lr = lr * spec.train.d_lr_mult
    d_params, d_opt = optim.adam_step(spec.train, d_lr, state.params["D"], state.opt["D"], d_grads)

    (loss_g, (g_gan, g_l1, d_variables)), fake_grad = jax.value_and_grad(
        _generator_loss, argnums=1, has_aux=True)(
        spec, fake_b, d_params, d_variables, real_a, real_b)
    (g_grads,) = generator_vjp(fake_grad)
    g_params, g_opt = optim.adam_step(spec.train, lr, state.params["G"], state.opt["G"], g_grads)

    new_state = state.replace(
        step=state.step + 1,
        params={"G": g_params, "D": d_params},
        batch_stats={"G": g_stats, "D": d_variables[0]},
        batches_tracked={"G": state.batches_tracked["G"] + 1,
                         "D": state.batches_tracked["D"] + D_CALLS_PER_STEP},
        spectral={"D": d_variables[1]},
        opt={"G": g_opt, "D": d_opt},
        rng=jax.random.key_data(rng),
    )
    metrics = {"G_GAN": g_gan, "G_L1": g_l1, "D_real": d_real, "D_fake": d_fake, "G": loss_g}
    visuals = {"AtoB": {"input": real_a, "output": fake_b, "target": real_b}}
    return new_state, metrics, visuals


def summarize(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The iteration's losses as floats."""
    return {name: float(np.asarray(value)) for name, value in metrics.items()}


# ----------------------------------------------------------------------------------------------
# Inference


@functools.partial(jax.jit, static_argnums=0)
def _translate_pure(graphdef: nnx.GraphDef, variables: nnx.State, images: jax.Array, key: jax.Array | None):
    return nnx.merge(graphdef, variables, copy=True)(images, True, key)


def translate(generator: UnetGenerator, images: jax.Array, key: jax.Array | None = None) -> jax.Array:
    """G(images) as the reference tests and the paper prescribes: batch statistics of the test batch
    and, if the U-Net has dropout, dropout drawn from `key`. The module is left unchanged."""
    graphdef, variables = nnx.split(generator)
    dtype = generator.downs[0].kernel[...].dtype
    return _translate_pure(graphdef, variables, jnp.asarray(images, dtype), key)
