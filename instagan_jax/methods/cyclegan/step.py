"""CycleGAN (Zhu et al. 2017) as the fork trains it: two ResNet generators, two spectrally normalised
PatchGAN discriminators, LSGAN, cycle and identity L1 losses, an image pool per discriminator.

One iteration, in the reference's order:

1. G_A translates A -> fake_B, G_B reconstructs rec_A; G_B translates B -> fake_A, G_A reconstructs rec_B;
2. generator loss: identity (G_A on real B, G_B on real A), LSGAN of D_A(fake_B) and D_B(fake_A) (each
   D call advances that D's spectral-norm u, v once), cycle L1; one Adam step on G_A and G_B;
3. D_A: 0.5 * (LSGAN(D_A(real_B), 1) + LSGAN(D_A(pool(fake_B)), 0)), one Adam step; then D_B likewise
   with real_A and pool(fake_A). Each D call advances u, v once more.

Losses are means over the whole batch (every element), as the reference's MSE and L1 losses.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from instagan_jax import optim, pool
from instagan_jax.methods.base import ImageSpec
from instagan_jax.nn.build import DTYPES, ModelConfig, ResnetModel, abstract, apply, create
from instagan_jax.nn.losses import lsgan_per_sample
from instagan_jax.nn.modules import Decoder, Encoder, SpectralVector, check_resnet_gan_size
from instagan_jax.nn.patchgan import PatchDiscriminator

GENERATORS = ("G_A", "G_B")
DISCRIMINATORS = ("D_A", "D_B")
NETWORKS = GENERATORS + DISCRIMINATORS
N_LAYERS_D = 3


class ResnetGenerator(nnx.Module):
    """The reference's ResnetGenerator with instance norm: image (B,H,W,C) -> image in [-1, 1]."""

    def __init__(self, model: ResnetModel, *, rngs: nnx.Rngs):
        self.encoder = Encoder(model.image_channels, model.ngf, model.n_blocks, rngs=rngs)
        self.decoder = Decoder(model.ngf, model.image_channels, upsample=model.upsample, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.decoder(self.encoder(x))


class Discriminator(PatchDiscriminator):
    """The fork's NLayerDiscriminator (3 layers, instance norm, spectral norm), LSGAN logits."""

    def __init__(self, model: ModelConfig, *, rngs: nnx.Rngs):
        super().__init__(model.image_channels, model.ndf, n_layers=N_LAYERS_D, norm="instance", rngs=rngs)


def network_class(name: str) -> type[nnx.Module]:
    """The module class of network `name` (G_A, G_B, D_A or D_B)."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}: choose one of {NETWORKS}")
    return ResnetGenerator if name in GENERATORS else Discriminator


@dataclasses.dataclass(frozen=True)
class Spec(ImageSpec):
    """Everything static about an iteration (hashable: the jit cache key)."""

    def __post_init__(self) -> None:
        check_resnet_gan_size(self.height, self.width)

    @functools.cached_property
    def graphdefs(self) -> dict[str, nnx.GraphDef]:
        """Graph definitions of the four networks, by name."""
        return {name: nnx.graphdef(abstract(network_class(name), self.model)) for name in NETWORKS}


@flax.struct.dataclass
class TrainState:
    """All that training changes: a pytree, checkpointed whole."""

    step: jax.Array  # iterations done
    params: dict[str, nnx.State]  # trainable parameters of G_A, G_B, D_A, D_B
    spectral: dict[str, nnx.State]  # spectral-norm vectors u, v of D_A, D_B
    opt: dict[str, Any]  # one Adam state per network
    pools: dict[str, pool.ImagePool]  # generated images of domain B (shown to D_A) and of domain A (D_B)
    rng: jax.Array  # raw key data (uint32), for the pools


def fresh_network(name: str, model: ModelConfig, seed: int = 0) -> nnx.Module:
    """Network `name` with the reference's init, as `init_state(spec, seed)` makes it."""
    return create(network_class(name), model, seed * len(NETWORKS) + NETWORKS.index(name))


def init_state(spec: Spec, seed: int = 0) -> TrainState:
    """Fresh networks (the reference's init), zero Adam moments, empty pools."""
    return state_from_networks(spec, {name: fresh_network(name, spec.model, seed) for name in NETWORKS}, seed)


def state_from_networks(spec: Spec, networks: dict[str, nnx.Module], seed: int = 0) -> TrainState:
    """A train state at step 0 around given networks (e.g. imported from the reference)."""
    params = {name: nnx.state(networks[name], nnx.Param) for name in NETWORKS}
    spectral = {name: nnx.state(networks[name], SpectralVector) for name in DISCRIMINATORS}
    adam = optim.adam(spec.train)
    dtype = DTYPES[spec.model.dtype]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        spectral=spectral,
        opt={name: adam.init(params[name]) for name in NETWORKS},
        pools={domain: pool.empty_image_pool(spec.train.pool_size, spec.height, spec.width,
                                             spec.model.image_channels, dtype) for domain in ("A", "B")},
        rng=jax.random.key_data(jax.random.key(seed)),
    )


def modules(spec: Spec, state: TrainState) -> dict[str, nnx.Module]:
    """The four networks of a state as NNX modules (discriminators with their u, v)."""
    out = {}
    for name in NETWORKS:
        states = (state.params[name], state.spectral[name]) if name in DISCRIMINATORS else (state.params[name],)
        out[name] = nnx.merge(spec.graphdefs[name], *states)
    return out


def translate(generator: ResnetGenerator, images: jax.Array) -> jax.Array:
    """A generator's translation of (B,H,W,C) images in [-1, 1] (forward only, compiled)."""
    return apply(generator, images)


def _generate(spec: Spec, name: str, params: nnx.State, images: jax.Array) -> jax.Array:
    return nnx.merge(spec.graphdefs[name], params)(images)


def _discriminate(spec: Spec, name: str, params: nnx.State, vectors: nnx.State, images: jax.Array):
    """D's patch scores and its u, v after the call (advanced once)."""
    module = nnx.merge(spec.graphdefs[name], params, vectors, copy=True)
    return module(images), nnx.state(module, SpectralVector)


def _lsgan(scores: jax.Array, target: float) -> jax.Array:
    return jnp.mean(lsgan_per_sample(scores, target))


def _l1(x: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(x - y))


def _generator_loss(spec: Spec, g_params: dict, d_params: dict, spectral: dict, real: dict):
    """The reference's backward_G: (total, (terms, images, D vectors after the D calls))."""
    images = {"fake_B": _generate(spec, "G_A", g_params["G_A"], real["A"]),
              "fake_A": _generate(spec, "G_B", g_params["G_B"], real["B"])}
    images["rec_A"] = _generate(spec, "G_B", g_params["G_B"], images["fake_B"])
    images["rec_B"] = _generate(spec, "G_A", g_params["G_A"], images["fake_A"])
    weights = spec.loss
    terms = {}
    if weights.lambda_idt > 0:
        images["idt_A"] = _generate(spec, "G_A", g_params["G_A"], real["B"])
        images["idt_B"] = _generate(spec, "G_B", g_params["G_B"], real["A"])
        terms["idt_A"] = _l1(images["idt_A"], real["B"]) * weights.lambda_B * weights.lambda_idt
        terms["idt_B"] = _l1(images["idt_B"], real["A"]) * weights.lambda_A * weights.lambda_idt
    else:
        terms["idt_A"] = terms["idt_B"] = jnp.zeros((), real["A"].dtype)
    scores_a, vectors_a = _discriminate(spec, "D_A", d_params["D_A"], spectral["D_A"], images["fake_B"])
    scores_b, vectors_b = _discriminate(spec, "D_B", d_params["D_B"], spectral["D_B"], images["fake_A"])
    terms["G_A"] = _lsgan(scores_a, 1.0)
    terms["G_B"] = _lsgan(scores_b, 1.0)
    terms["cycle_A"] = _l1(images["rec_A"], real["A"]) * weights.lambda_A
    terms["cycle_B"] = _l1(images["rec_B"], real["B"]) * weights.lambda_B
    total = (terms["G_A"] + terms["G_B"] + terms["cycle_A"] + terms["cycle_B"]
             + terms["idt_A"] + terms["idt_B"])
    return total, (terms, images, {"D_A": vectors_a, "D_B": vectors_b})


def _discriminator_loss(spec: Spec, name: str, params: nnx.State, vectors: nnx.State, real: jax.Array,
                        fake: jax.Array):
    """The reference's backward_D_basic: 0.5 * (LSGAN(D(real), 1) + LSGAN(D(fake), 0)); u, v advance twice."""
    real_scores, vectors = _discriminate(spec, name, params, vectors, real)
    fake_scores, vectors = _discriminate(spec, name, params, vectors, fake)
    return 0.5 * (_lsgan(real_scores, 1.0) + _lsgan(fake_scores, 0.0)), vectors


# discriminator -> (the domain it judges, the generated image it is shown)
_JUDGES = {"D_A": ("B", "fake_B"), "D_B": ("A", "fake_A")}


def train_step(spec: Spec, state: TrainState, batch: dict[str, jax.Array]):
    """One iteration on a batch (img_A, img_B; other keys ignored) -> (state, metrics, visuals)."""
    dtype = DTYPES[spec.model.dtype]
    real = {"A": batch["img_A"].astype(dtype), "B": batch["img_B"].astype(dtype)}
    lr = optim.learning_rate(spec.train, spec.iters_per_epoch, state.step)
    params, opt, spectral, pools = dict(state.params), dict(state.opt), dict(state.spectral), dict(state.pools)

    g_params = {name: params[name] for name in GENERATORS}
    (loss_g, (terms, images, vectors)), g_grads = jax.value_and_grad(_generator_loss, argnums=1, has_aux=True)(
        spec, g_params, params, spectral, real)
    for name in GENERATORS:
        params[name], opt[name] = optim.adam_step(spec.train, lr, params[name], opt[name], g_grads[name])
    spectral.update(vectors)

    key, *pool_keys = jax.random.split(jax.random.wrap_key_data(state.rng), 1 + len(DISCRIMINATORS))
    metrics = dict(terms)
    for name, pool_key in zip(DISCRIMINATORS, pool_keys):
        domain, fake_name = _JUDGES[name]
        pools[domain], fake = pool.query_images(pools[domain], pool_key, images[fake_name])
        (metrics[name], spectral[name]), d_grads = jax.value_and_grad(
            _discriminator_loss, argnums=2, has_aux=True)(spec, name, params[name], spectral[name], real[domain],
                                                          fake)
        params[name], opt[name] = optim.adam_step(spec.train, lr * spec.train.d_lr_mult, params[name], opt[name],
                                                  d_grads)
    metrics["G"] = loss_g

    new_state = TrainState(step=state.step + 1, params=params, spectral=spectral, opt=opt, pools=pools,
                           rng=jax.random.key_data(key))
    return new_state, metrics, _visuals(real, images)


def _visuals(real: dict[str, jax.Array], images: dict[str, jax.Array]) -> dict[str, dict[str, jax.Array]]:
    """Per source domain: its real image, translation, reconstruction and (when computed) identity."""
    visuals = {}
    for source, target in (("A", "B"), ("B", "A")):
        row = {"real": real[source], "fake": images[f"fake_{target}"], "rec": images[f"rec_{source}"]}
        if f"idt_{target}" in images:
            row["idt"] = images[f"idt_{target}"]  # the identity map of this domain's real image
        visuals[source] = row
    return visuals


VISUAL_COLUMNS = ("real", "fake", "rec", "idt")


def visual_rows(visuals: dict[str, dict[str, jax.Array]]) -> dict[str, dict[str, jax.Array]]:
    """The sample grid's rows in the reference's order (a jitted step returns dict keys sorted)."""
    return {f"{source}->{target}": {column: visuals[source][column] for column in VISUAL_COLUMNS
                                    if column in visuals[source]} for source, target in (("A", "B"), ("B", "A"))}


def summarize(metrics: dict[str, Any]) -> dict[str, float]:
    """The iteration's loss terms as floats."""
    return {name: float(value) for name, value in metrics.items()}
