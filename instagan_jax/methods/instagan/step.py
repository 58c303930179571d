"""One InstaGAN training iteration as one pure, jittable function (REFERENCE.md §3-4, paper §2.3).

The masks of each sample are ordered largest first, cut to `ins_max` and split into groups of
`ins_per`; a `lax.scan` over the groups runs the reference's sub-step on each:

1. both directions translate the current image with the group's masks (A->B: G_A, then G_B back);
2. generator losses: LSGAN on the whole translated set (earlier groups' masks constant, this group's
   live, -1 for groups not reached yet), cycle and identity L1 on image and masks, context loss;
3. one Adam step on G_A and G_B;
4. one Adam step on each discriminator that ran: real = the full real set, fake = an image-pool sample
   of the translated set (constant);
5. the next group translates this group's (constant) output image.

Batch > 1, per sample: a sample whose current group has no valid instance does not *run* that
direction in that group: its loss terms are masked out (means are over running samples) and its image
is not translated. A direction with no running sample makes no D call and no D update (its parameters,
Adam state and spectral-norm vectors stay as they were); G is updated when either direction runs.
At batch size 1 this is the reference's behaviour exactly (with the torch-0.4 spectral-norm semantics).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from instagan_jax import pool
from instagan_jax.methods.instagan import instances, losses
from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
from instagan_jax.nn.build import DTYPES, ModelConfig, abstract, create
from instagan_jax.nn.losses import LossWeights
from instagan_jax.nn.modules import SpectralVector

GENERATORS = ("G_A", "G_B")
DISCRIMINATORS = ("D_A", "D_B")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Adam and the reference's 'lambda' learning-rate policy (constant for `niter` epochs, then
    linear decay over `niter_decay`), stepped once per epoch of `iters_per_epoch` iterations."""

    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    eps: float = 1e-8
    niter: int = 100
    niter_decay: int = 100
    epoch_count: int = 1
    iters_per_epoch: float = 1.0

    def lr_at(self, iteration: jax.Array) -> jax.Array:
        """Learning rate during a (0-based) iteration."""
        epoch = jnp.floor(iteration / self.iters_per_epoch)
        decay = jnp.maximum(0.0, epoch + self.epoch_count - self.niter) / (self.niter_decay + 1)
        return self.lr * jnp.maximum(0.0, 1.0 - decay)

    def adam(self) -> optax.GradientTransformation:
        return optax.scale_by_adam(b1=self.beta1, b2=self.beta2, eps=self.eps)


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything static about a training iteration (hashable: the jit cache key)."""

    model: ModelConfig
    height: int
    width: int
    ins_max: int = 4
    ins_per: int = 2
    pool_size: int = 50
    weights: LossWeights = LossWeights()
    schedule: Schedule = Schedule()
    unroll_groups: bool = False  # unrolled: ~5x faster on XLA CPU (convs in a loop body are slow), longer compile

    def __post_init__(self) -> None:
        if self.ins_per < 1 or self.ins_max < self.ins_per:
            raise ValueError(f"need 1 <= ins_per <= ins_max, got ins_per={self.ins_per}, ins_max={self.ins_max}")
        if self.height % 8 or self.width % 8:
            raise ValueError(f"image size {self.height}x{self.width}: height and width must be multiples of 8")
        if min(self.height, self.width) < 24:
            raise ValueError(f"image size {self.height}x{self.width}: height and width must be at least 24 "
                             "(the discriminator scores an (H/8 - 2) x (W/8 - 2) grid)")

    @property
    def n_groups(self) -> int:
        return self.ins_max // self.ins_per

    @property
    def set_slots(self) -> int:
        """Mask slots of a translated set (the reference's fake_X_mul): all groups."""
        return self.n_groups * self.ins_per

    @functools.cached_property
    def graphdefs(self) -> tuple[nnx.GraphDef, nnx.GraphDef]:
        g_def = nnx.graphdef(abstract(SetGenerator, self.model))
        d_def = nnx.graphdef(abstract(SetDiscriminator, self.model))
        return g_def, d_def


@flax.struct.dataclass
class TrainState:
    """All that training changes: a pytree, checkpointed whole."""

    step: jax.Array  # iterations done
    params: dict[str, nnx.State]  # G_A, G_B, D_A, D_B trainable parameters
    spectral: dict[str, nnx.State]  # D_A, D_B spectral-norm vectors u, v
    opt: dict[str, Any]  # one Adam state per network
    pools: dict[str, pool.SetPool]  # generated sets of domain B (shown to D_A) and of domain A (D_B)
    rng: jax.Array  # raw threefry key data (uint32), for the pools


def fresh_network(name: str, model: ModelConfig, seed: int = 0) -> nnx.Module:
    """Network `name` (G_A, G_B, D_A or D_B) with the reference's init, as `init_state(spec, seed)` makes it."""
    index = (GENERATORS + DISCRIMINATORS).index(name)
    return create(SetGenerator if name in GENERATORS else SetDiscriminator, model, seed * 4 + index)


def init_state(spec: StepSpec, seed: int = 0) -> TrainState:
    """Fresh networks (the reference's init), zero Adam moments, empty pools."""
    params, spectral = split_networks({name: fresh_network(name, spec.model, seed)
                                       for name in GENERATORS + DISCRIMINATORS})
    return state_from_params(spec, params, spectral, seed)


def state_from_params(spec: StepSpec, params: dict[str, nnx.State], spectral: dict[str, nnx.State],
                      seed: int = 0) -> TrainState:
    """A train state at step 0 around given network states (e.g. imported from the reference)."""
    adam = spec.schedule.adam()
    channels = spec.model.image_channels
    pools = {
        domain: pool.empty_pool(spec.pool_size, spec.height, spec.width, channels, spec.set_slots,
                                DTYPES[spec.model.dtype])
        for domain in ("A", "B")
    }
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=dict(params),
        spectral=dict(spectral),
        opt={name: adam.init(params[name]) for name in params},
        pools=pools,
        rng=jax.random.key_data(jax.random.key(seed)),
    )


def split_networks(module_by_name: dict[str, nnx.Module]) -> tuple[dict, dict]:
    """(params, spectral vectors) of named modules, in the train state's layout."""
    params, spectral = {}, {}
    for name, module in module_by_name.items():
        params[name] = nnx.state(module, nnx.Param)
        if isinstance(module, SetDiscriminator):
            spectral[name] = nnx.state(module, SpectralVector)
    return params, spectral


class RealSet(NamedTuple):
    """An image with its selected masks: (B,H,W,C), (B,K,H,W,1), (B,K)."""

    img: jax.Array
    masks: jax.Array
    valid: jax.Array


class Carry(NamedTuple):
    """What flows from one mask group to the next."""

    state: TrainState
    img: dict[str, jax.Array]  # current image of each domain (translated by the groups so far)
    fake_masks: dict[str, jax.Array]  # translated sets so far, keyed by the *target* domain
    fake_valid: dict[str, jax.Array]


class Visuals(NamedTuple):
    """The reference's visuals for one direction (batch-first)."""

    real_img: jax.Array
    fake_img: jax.Array
    rec_img: jax.Array  # reconstruction of the first group's translation
    real_union: jax.Array
    fake_union: jax.Array
    rec_union: jax.Array
    rec_masks: jax.Array  # (B,G*N,H,W,1) reconstructed masks, in selection order


# direction name -> (source domain, target domain, forward G, backward G, target's D, lambda field)
DIRECTIONS = {
    "A": ("A", "B", "G_A", "G_B", "D_A", "lambda_A"),
    "B": ("B", "A", "G_B", "G_A", "D_B", "lambda_B"),
}
# loss names of a direction, as the reference reports them
LOSS_NAMES = {
    "A": {"gan": "G_A", "cyc": "cyc_A", "idt": "idt_B", "ctx": "ctx_A", "d": "D_A"},
    "B": {"gan": "G_B", "cyc": "cyc_B", "idt": "idt_A", "ctx": "ctx_B", "d": "D_B"},
}


def _generate(spec: StepSpec, params: nnx.State, img, masks, valid):
    return nnx.merge(spec.graphdefs[0], params)(img, masks, valid)


def _discriminate(spec: StepSpec, params: nnx.State, vectors: nnx.State, img, masks, valid):
    module = nnx.merge(spec.graphdefs[1], params, vectors, copy=True)
    return module(img, masks, valid), nnx.state(module, SpectralVector)


def _where(flag: jax.Array, new, old):
    """`new` where the scalar `flag` holds, else `old` (leaf by leaf)."""
    return jax.tree.map(lambda n, o: jnp.where(flag, n, o), new, old)


def _adam_step(spec: StepSpec, lr, params, opt_state, grads):
    updates, opt_state = spec.schedule.adam().update(grads, opt_state, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    return params, opt_state


def _direction_generator_losses(spec: StepSpec, g_params: dict, carry: Carry, direction: str,
                                masks: jax.Array, valid: jax.Array, group: jax.Array, runs: jax.Array):
    """Generator loss terms of one direction for the current group, per the module docstring."""
    source, target, forward, backward, disc, lambda_name = DIRECTIONS[direction]
    lam = getattr(spec.weights, lambda_name)
    img = carry.img[source]
    fake_img, fake_masks = _generate(spec, g_params[forward], img, masks, valid)
    rec_img, rec_masks = _generate(spec, g_params[backward], fake_img, fake_masks, valid)
    idt_img, idt_masks = _generate(spec, g_params[backward], img, masks, valid)
    start = group * spec.ins_per
    set_masks = jax.lax.dynamic_update_slice_in_dim(carry.fake_masks[target], fake_masks, start, axis=1)
    set_valid = jax.lax.dynamic_update_slice_in_dim(carry.fake_valid[target], valid, start, axis=1)
    scores, vectors = _discriminate(spec, carry.state.params[disc], carry.state.spectral[disc],
                                    fake_img, set_masks, set_valid & runs[:, None])
    names = LOSS_NAMES[direction]
    terms = {
        names["gan"]: losses.masked_mean(losses.lsgan_per_sample(scores, 1.0), runs),
        names["cyc"]: lam * losses.masked_mean(
            losses.set_l1_per_sample(rec_img, rec_masks, img, masks), runs),
        names["idt"]: lam * spec.weights.lambda_idt * losses.masked_mean(
            losses.set_l1_per_sample(idt_img, idt_masks, img, masks), runs),
        names["ctx"]: lam * spec.weights.lambda_ctx * losses.masked_mean(
            losses.context_per_sample(img, fake_img, masks, fake_masks), runs),
    }
    outputs = {"fake_img": fake_img, "fake_masks": fake_masks, "rec_img": rec_img, "rec_masks": rec_masks,
               "set_masks": set_masks, "set_valid": set_valid, "vectors": vectors}
    return terms, outputs


def _discriminator_loss(spec: StepSpec, params, vectors, real: RealSet, fake: RealSet, runs):
    """0.5 * (LSGAN(D(real), 1) + LSGAN(D(fake), 0)) over running samples; u, v advance twice."""
    real_scores, vectors = _discriminate(spec, params, vectors, real.img, real.masks,
                                         real.valid & runs[:, None])
    fake_scores, vectors = _discriminate(spec, params, vectors, fake.img, fake.masks,
                                         fake.valid & runs[:, None])
    loss = 0.5 * (losses.masked_mean(losses.lsgan_per_sample(real_scores, 1.0), runs)
                  + losses.masked_mean(losses.lsgan_per_sample(fake_scores, 0.0), runs))
    return loss, vectors


class GroupOutputs(NamedTuple):
    """Per-group results: loss terms, whether each direction ran, gradients (for parity checks)."""

    losses: dict[str, jax.Array]
    ran: dict[str, jax.Array]
    grads: dict[str, nnx.State]
    outputs: dict[str, dict[str, jax.Array]]


def group_step(spec: StepSpec, carry: Carry, group: tuple, real: dict[str, RealSet],
               key: jax.Array) -> tuple[Carry, GroupOutputs]:
    """The reference's sub-step on one mask group: G losses, G Adam step, D Adam steps."""
    group_masks, group_valid, group_index = group
    state = carry.state
    lr = spec.schedule.lr_at(state.step)
    runs = {d: jnp.any(group_valid[DIRECTIONS[d][0]], axis=1) for d in DIRECTIONS}
    ran = {d: jnp.any(runs[d]) for d in DIRECTIONS}

    def generator_loss(g_params):
        terms, outputs = {}, {}
        for d in DIRECTIONS:
            source = DIRECTIONS[d][0]
            terms_d, outputs[d] = _direction_generator_losses(
                spec, g_params, carry, d, group_masks[source], group_valid[source], group_index, runs[d])
            terms.update(terms_d)
        return sum(terms.values()), (terms, outputs)

    g_params = {name: state.params[name] for name in GENERATORS}
    (loss_g, (terms, outputs)), g_grads = jax.value_and_grad(generator_loss, has_aux=True)(g_params)
    params, opt, spectral = dict(state.params), dict(state.opt), dict(state.spectral)
    any_ran = ran["A"] | ran["B"]
    for name in GENERATORS:
        new_params, new_opt = _adam_step(spec, lr, params[name], opt[name], g_grads[name])
        params[name] = _where(any_ran, new_params, params[name])
        opt[name] = _where(any_ran, new_opt, opt[name])

    pools, grads = dict(state.pools), dict(g_grads)
    pool_keys = jax.random.split(key, 2)
    for i, d in enumerate(DIRECTIONS):
        _, target, _, _, disc, _ = DIRECTIONS[d]
        out = outputs[d]  # auxiliary outputs of the G loss: constants here
        spectral[disc] = _where(ran[d], out["vectors"], spectral[disc])  # the D call inside the G step
        new_pool, (fake_img, fake_masks, fake_valid) = pool.query(
            pools[target], pool_keys[i], out["fake_img"], out["set_masks"], out["set_valid"], runs[d])
        fake = RealSet(fake_img, fake_masks, fake_valid)
        (loss_d, vectors), d_grads = jax.value_and_grad(
            _discriminator_loss, argnums=1, has_aux=True)(spec, params[disc], spectral[disc],
                                                          real[target], fake, runs[d])
        new_params, new_opt = _adam_step(spec, lr, params[disc], opt[disc], d_grads)
        params[disc] = _where(ran[d], new_params, params[disc])
        opt[disc] = _where(ran[d], new_opt, opt[disc])
        spectral[disc] = _where(ran[d], vectors, spectral[disc])
        pools[target] = new_pool
        terms[LOSS_NAMES[d]["d"]] = loss_d
        grads[disc] = d_grads

    terms["G"] = loss_g
    new_state = state.replace(params=params, opt=opt, spectral=spectral, pools=pools)
    next_img, fake_masks, fake_valid = {}, dict(carry.fake_masks), dict(carry.fake_valid)
    for d in DIRECTIONS:
        source, target = DIRECTIONS[d][:2]
        out = outputs[d]
        keep = runs[d][:, None, None, None]
        next_img[source] = jnp.where(keep, out["fake_img"], carry.img[source])
        fake_masks[target] = out["set_masks"]
        fake_valid[target] = out["set_valid"]
    new_carry = Carry(new_state, next_img, fake_masks, fake_valid)
    return new_carry, GroupOutputs(terms, ran, grads, outputs)


def select_sets(spec: StepSpec, batch: dict[str, jax.Array]) -> dict[str, RealSet]:
    """Per domain, the `ins_max` largest valid masks, largest first, in the model's dtype."""
    dtype = DTYPES[spec.model.dtype]
    sets = {}
    for domain in ("A", "B"):
        masks = jnp.where(batch[f"valid_{domain}"][:, :, None, None, None], batch[f"masks_{domain}"], -1.0)
        selected, valid = instances.select_largest(masks.astype(dtype), spec.ins_max)
        sets[domain] = RealSet(batch[f"img_{domain}"].astype(dtype), selected, valid)
    return sets


def initial_carry(spec: StepSpec, state: TrainState, real: dict[str, RealSet]) -> Carry:
    """Before the first group: real images, translated sets all -1 (not reached yet)."""
    batch = real["A"].img.shape[0]
    empty = -jnp.ones((batch, spec.set_slots, spec.height, spec.width, 1), real["A"].img.dtype)
    no_valid = jnp.zeros((batch, spec.set_slots), bool)
    return Carry(state, {d: real[d].img for d in real}, {d: empty for d in real},
                 {d: no_valid for d in real})


def grouped_masks(spec: StepSpec, real: dict[str, RealSet]):
    """Scan inputs: per domain (G,B,N,H,W,1) masks and (G,B,N) validity, and the group indices."""
    groups = {d: instances.split_groups(real[d].masks, real[d].valid, spec.ins_per) for d in real}
    masks = {d: groups[d][0] for d in groups}
    valid = {d: groups[d][1] for d in groups}
    return masks, valid, jnp.arange(spec.n_groups)


def train_iteration(spec: StepSpec, state: TrainState,
                    batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array], dict[str, Visuals]]:
    """One iteration on a batch (img_X, masks_X, valid_X for X in A, B).

    Returns the new state, the per-group loss terms and run flags (arrays of shape (n_groups,)), and
    the visuals of both directions.
    """
    real = select_sets(spec, batch)
    key, subkey = jax.random.split(jax.random.wrap_key_data(state.rng))
    group_keys = jax.random.split(subkey, spec.n_groups)

    def body(carry, inputs):
        masks, valid, index, group_key = inputs
        carry, out = group_step(spec, carry, (masks, valid, index), real, group_key)
        slim = {d: {"rec_img": out.outputs[d]["rec_img"], "rec_masks": out.outputs[d]["rec_masks"]}
                for d in DIRECTIONS}
        flags = {f"ran_{d}": out.ran[d] for d in DIRECTIONS}
        return carry, ({**out.losses, **flags}, slim)

    masks, valid, indices = grouped_masks(spec, real)
    carry, (metrics, per_group) = jax.lax.scan(
        body, initial_carry(spec, state, real), (masks, valid, indices, group_keys),
        unroll=spec.unroll_groups)
    new_state = carry.state.replace(step=state.step + 1, rng=jax.random.key_data(key))
    visuals = {}
    for d in DIRECTIONS:
        source, target = DIRECTIONS[d][:2]
        rec_masks = instances.merge_groups(per_group[d]["rec_masks"])
        visuals[d] = Visuals(
            real_img=real[source].img, fake_img=carry.img[source], rec_img=per_group[d]["rec_img"][0],
            real_union=losses.merge_masks(real[source].masks),
            fake_union=losses.merge_masks(carry.fake_masks[target]),
            rec_union=losses.merge_masks(rec_masks), rec_masks=rec_masks)
    return new_state, metrics, visuals


def summarize(metrics: dict[str, Any]) -> dict[str, float]:
    """Per-iteration scalars from per-group metrics: each direction's terms averaged over the groups
    in which it ran (0 if none), the total G loss over groups in which anything ran."""
    out = {}
    for d in DIRECTIONS:
        ran = metrics[f"ran_{d}"].astype(float)
        for name in LOSS_NAMES[d].values():
            out[name] = float((metrics[name] * ran).sum() / max(ran.sum(), 1.0))
    any_ran = (metrics["ran_A"] | metrics["ran_B"]).astype(float)
    out["G"] = float((metrics["G"] * any_ran).sum() / max(any_ran.sum(), 1.0))
    return out
