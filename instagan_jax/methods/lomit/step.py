"""LOMIT's training step: WGAN-GP with n_critic discriminator updates per generator update, in one
compiled step (the generator's update is a `lax.cond` on the step number, not Python branching).

Each image x_1 of a batch takes the previous image of the batch as its exemplar x_2 (a roll by one), so
a batch needs at least 2 images. One iteration:

1. D: translate x_1 with x_2's foreground style (no gradient to G), then
   -E[D(x_1)] + E[D(x_12)] + lambda_gp * GP(x_hat) + lambda_cls * BCE(D_cls(x_1), y_1); one Adam step.
2. G, on every n_critic-th iteration (StarGAN's (i + 1) % n_critic == 0), against the updated D:
   -E[D(x_12)] + lambda_cls * BCE(D_cls(x_12), y_2) + lambda_rec * (|x_121 - x_1| + |x_11 - x_1|)
   + lambda_content * |E_c(x_12) - E_c(x_1)| + lambda_style * (|s_f(x_12) - s_f(x_2)| + |s_b(x_12) - s_b(x_1)|)
   + lambda_mask_sim * R_1 + lambda_mask_size * R_2 over the masks of x_1, x_12 and x_11; one Adam step.

x_12 = the translation, x_121 = x_12 translated back with x_1's foreground style, x_11 = x_1 translated
with itself as the exemplar (the self-translation).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from instagan_jax import optim
from instagan_jax.methods import ImageSpec
from instagan_jax.methods.lomit import losses
from instagan_jax.methods.lomit.networks import (
    Discriminator,
    Generator,
    SizedModel,
    sized_model,
    upsample_mask,
)
from instagan_jax.nn.build import DTYPES, abstract, apply, create

NETWORKS = ("G", "D")
G_TERMS = ("G_adv", "G_cls", "cycle", "self", "content", "style_fg", "style_bg", "mask_sim", "mask_size", "G")
D_TERMS = ("D_real", "D_fake", "gp", "D_cls", "D")


@dataclasses.dataclass(frozen=True)
class Spec(ImageSpec):
    """Everything static about an iteration (hashable: the jit cache key)."""

    def __post_init__(self) -> None:
        side = max(2**self.model.d_layers, 16)
        if self.height % side or self.width % side:
            raise ValueError(f"image size {self.height}x{self.width}: LOMIT needs height and width multiples of "
                             f"{side} (the discriminator halves the image model.d_layers = {self.model.d_layers} "
                             "times, the style encoder 4 times)")
        if self.train.batch_size < 2:
            raise ValueError(f"train.batch_size {self.train.batch_size}: LOMIT takes each image's exemplar from the "
                             "same batch, so it needs at least 2")

    @property
    def sized_model(self) -> SizedModel:
        return sized_model(self.model, self.height, self.width)

    @functools.cached_property
    def graphdefs(self) -> dict[str, nnx.GraphDef]:
        return {name: nnx.graphdef(network) for name, network in abstract_networks(self).items()}


def abstract_networks(spec: Spec) -> dict[str, nnx.Module]:
    """G and D with shapes but no values."""
    return {"G": abstract(Generator, spec.model), "D": abstract(Discriminator, spec.sized_model)}


@flax.struct.dataclass
class TrainState:
    """All that training changes: a pytree, checkpointed whole."""

    step: jax.Array  # iterations done
    params: dict[str, nnx.State]  # trainable parameters of G (all generator parts) and D
    batch_stats: dict[str, nnx.State]  # the mask network's batch-norm running statistics (G)
    opt: dict[str, Any]  # Adam state per network
    rng: jax.Array  # raw key data (uint32), for the gradient penalty's interpolation


def init_state(spec: Spec, seed: int = 0) -> TrainState:
    """Fresh networks (PyTorch's default init), zero Adam moments."""
    networks = {"G": create(Generator, spec.model, 2 * seed),
                "D": create(Discriminator, spec.sized_model, 2 * seed + 1)}
    params = {name: nnx.state(networks[name], nnx.Param) for name in NETWORKS}
    adam = optim.adam(spec.train)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats={"G": nnx.state(networks["G"], nnx.BatchStat)},
                      opt={name: adam.init(params[name]) for name in NETWORKS},
                      rng=jax.random.key_data(jax.random.key(seed)))


def modules(spec: Spec, state: TrainState) -> dict[str, nnx.Module]:
    """G and D of a state as NNX modules."""
    return {"G": nnx.merge(spec.graphdefs["G"], state.params["G"], state.batch_stats["G"]),
            "D": nnx.merge(spec.graphdefs["D"], state.params["D"])}


def translate(generator: Generator, images: jax.Array, exemplar: jax.Array,
              mask: jax.Array | None = None) -> dict[str, jax.Array]:
    """`Generator.__call__` compiled, in inference mode (batch norm's running statistics); `exemplar`
    (1 or B, H, W, 3) is broadcast to the batch."""
    exemplar = jnp.broadcast_to(exemplar, images.shape)
    return apply(generator, images, exemplar, mask)


def _l1(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(a - b))


def _generator_loss(spec: Spec, g_params: nnx.State, stats: nnx.State, d_params: nnx.State, real: jax.Array,
                    exemplar: jax.Array, exemplar_labels: jax.Array):
    """(total, (terms, images, new batch-norm statistics))."""
    g = nnx.merge(spec.graphdefs["G"], g_params, stats, copy=True)
    d = nnx.merge(spec.graphdefs["D"], d_params)
    w = spec.loss
    forward = g(real, exemplar, train=True)
    fake, mask, content = forward["output"], forward["mask"], forward["content"]
    self_mask = g.mask(content, content, True)
    self_translation = g.render(self_mask, content, g.fg_style(real, self_mask), g.bg_style(real, self_mask))
    fake_content = g.content(fake)
    fake_mask = g.mask(fake_content, content, True)
    fake_fg, fake_bg = g.fg_style(fake, fake_mask), g.bg_style(fake, fake_mask)
    cycle = g.render(fake_mask, fake_content, g.fg_style(real, mask), fake_bg)
    src, cls = d(fake)
    masks = ((mask, content), (fake_mask, fake_content), (self_mask, content))
    terms = {
        "G_adv": -jnp.mean(src),
        "G_cls": w.lambda_cls * losses.attribute_loss(cls, exemplar_labels),
        "cycle": w.lambda_rec * _l1(cycle, real),
        "self": w.lambda_rec * _l1(self_translation, real),
        "content": w.lambda_content * _l1(fake_content, content),
        "style_fg": w.lambda_style * _l1(fake_fg, g.fg_style(exemplar, forward["exemplar_mask"])),
        "style_bg": w.lambda_style * _l1(fake_bg, g.bg_style(real, mask)),
        "mask_sim": w.lambda_mask_sim * sum(losses.mask_similarity(m, c) for m, c in masks),
        "mask_size": w.lambda_mask_size * sum(losses.mask_size(m) for m, _ in masks),
    }
    total = sum(terms.values())
    images = {"translation": fake, "self": self_translation, "cycle": cycle, "mask": mask}
    return total, ({**terms, "G": total}, images, nnx.state(g, nnx.BatchStat))


def _discriminator_loss(spec: Spec, d_params: nnx.State, real: jax.Array, labels: jax.Array, fake: jax.Array,
                        alpha: jax.Array):
    """(total, terms): WGAN-GP's critic loss and the attribute loss on real images."""
    d = nnx.merge(spec.graphdefs["D"], d_params)
    src_real, cls_real = d(real)
    src_fake, _ = d(fake)
    x_hat = losses.interpolate(real, fake, alpha)
    terms = {"D_real": -jnp.mean(src_real), "D_fake": jnp.mean(src_fake),
             "gp": spec.loss.lambda_gp * losses.gradient_penalty(lambda x: d(x)[0], x_hat),
             "D_cls": spec.loss.lambda_cls * losses.attribute_loss(cls_real, labels)}
    total = sum(terms.values())
    return total, {**terms, "D": total}


def exemplars(batch: jax.Array) -> jax.Array:
    """Each sample's exemplar: the previous sample of the batch (the first takes the last)."""
    return jnp.roll(batch, 1, axis=0)


def train_step(spec: Spec, state: TrainState, batch: dict[str, jax.Array]):
    """One iteration on a batch (img (B,H,W,3), labels (B,C)) -> (state, metrics, visuals)."""
    dtype = DTYPES[spec.model.dtype]
    real, labels = batch["img"].astype(dtype), batch["labels"].astype(dtype)
    exemplar, exemplar_labels = exemplars(real), exemplars(labels)
    lr = optim.learning_rate(spec.train, spec.iters_per_epoch, state.step)
    key, alpha_key = jax.random.split(jax.random.wrap_key_data(state.rng))
    params, opt = dict(state.params), dict(state.opt)

    g = nnx.merge(spec.graphdefs["G"], params["G"], state.batch_stats["G"], copy=True)
    forward = jax.lax.stop_gradient(g(real, exemplar, train=True))
    fake = forward["output"]
    stats = nnx.state(g, nnx.BatchStat)
    alpha = jax.random.uniform(alpha_key, (real.shape[0],), dtype)
    (_, d_terms), d_grads = jax.value_and_grad(_discriminator_loss, argnums=1, has_aux=True)(
        spec, params["D"], real, labels, fake, alpha)
    params["D"], opt["D"] = optim.adam_step(spec.train, lr * spec.train.d_lr_mult, params["D"], opt["D"], d_grads)

    def update_generator(operands):
        g_params, g_opt, g_stats = operands
        (_, (terms, images, new_stats)), grads = jax.value_and_grad(_generator_loss, argnums=1, has_aux=True)(
            spec, g_params, g_stats, params["D"], real, exemplar, exemplar_labels)
        g_params, g_opt = optim.adam_step(spec.train, lr, g_params, g_opt, grads)
        return (g_params, g_opt, new_stats), terms

    def skip_generator(operands):
        return operands, {name: jnp.zeros((), dtype) for name in G_TERMS}

    ran_g = (state.step + 1) % spec.train.n_critic == 0
    (params["G"], opt["G"], stats), g_terms = jax.lax.cond(
        ran_g, update_generator, skip_generator, (params["G"], opt["G"], stats))

    new_state = TrainState(step=state.step + 1, params=params, batch_stats={"G": stats}, opt=opt,
                           rng=jax.random.key_data(key))
    metrics = {**d_terms, **g_terms, "ran_G": ran_g}
    visuals = {"input": real, "exemplar": exemplar, "translation": fake,
               "mask": mask_image(forward["mask"], spec.height, spec.width)}
    return new_state, metrics, visuals


VISUAL_COLUMNS = ("input", "exemplar", "mask", "translation")


def visual_rows(visuals: dict[str, jax.Array]) -> dict[str, dict[str, jax.Array]]:
    """One sample-grid row: input, exemplar (the previous image of the batch), the input's learned mask,
    translation."""
    return {"x1 with x2's foreground": {column: visuals[column] for column in VISUAL_COLUMNS}}


def summarize(metrics: dict[str, Any]) -> dict[str, float]:
    """The discriminator's terms, and the generator's where it ran in this iteration."""
    names = D_TERMS + (G_TERMS if bool(metrics["ran_G"]) else ())
    return {name: float(metrics[name]) for name in names}


def mask_image(mask: jax.Array, height: int, width: int) -> jax.Array:
    """A 1/4-resolution mask in [0, 1] as a (B, H, W, 1) image in [-1, 1], for sample grids."""
    return 2.0 * upsample_mask(mask, height, width) - 1.0
