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
A group after the first with no valid slot in either domain changes nothing, and `train_step` skips its
work (`lax.cond`) as the reference's loop does.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from instagan_jax import optim, pool
from instagan_jax.methods.instagan import losses
from instagan_jax.methods.instagan.config import InstaganLoss, InstaganTrain
from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
from instagan_jax.nn import instances
from instagan_jax.nn.build import DTYPES, ModelConfig, abstract, create
from instagan_jax.nn.modules import SpectralVector, check_resnet_gan_size

GENERATORS = ("G_A", "G_B")
DISCRIMINATORS = ("D_A", "D_B")


@dataclasses.dataclass(frozen=True)
class StepSpec:
    """Everything static about a training iteration (hashable: the jit cache key).

    The config's own sections: `model`, `loss` (lambdas) and `train` (Adam, the learning-rate policy,
    ins_max, ins_per, pool_size); the image size; iterations per epoch for the learning-rate policy.
    """

    model: ModelConfig
    height: int
    width: int
    train: InstaganTrain = InstaganTrain()
    loss: InstaganLoss = InstaganLoss()
    iters_per_epoch: float = 1.0
    unroll_groups: bool = False  # unrolled: same speed, compile time and memory grow with the groups

    def __post_init__(self) -> None:
        ins_max, ins_per = self.train.ins_max, self.train.ins_per
        if ins_per < 1 or ins_max < ins_per:
            raise ValueError(f"need 1 <= ins_per <= ins_max, got ins_per={ins_per}, ins_max={ins_max}")
        check_resnet_gan_size(self.height, self.width)

    @property
    def ins_max(self) -> int:
        return self.train.ins_max

    @property
    def ins_per(self) -> int:
        return self.train.ins_per

    @property
    def n_groups(self) -> int:
        return self.ins_max // self.ins_per

    @property
    def set_slots(self) -> int:
        """Mask slots of a translated set (the reference's fake_X_mul): all groups."""
        return self.n_groups * self.ins_per

    def learning_rate(self, iteration: jax.Array) -> jax.Array:
        return optim.learning_rate(self.train, self.iters_per_epoch, iteration)

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
    adam = optim.adam(spec.train)
    channels = spec.model.image_channels
    pools = {
        domain: pool.empty_pool(spec.train.pool_size, spec.height, spec.width, channels, spec.set_slots,
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


def modules(spec: StepSpec, state: TrainState) -> dict[str, nnx.Module]:
    """The four networks of a train state as modules (spectral vectors included)."""
    g_def, d_def = spec.graphdefs
    return {name: nnx.merge(g_def, state.params[name]) if name in GENERATORS
            else nnx.merge(d_def, state.params[name], state.spectral[name]) for name in state.params}


class RealSet(NamedTuple):
    """An image with its selected masks: (B,H,W,C), (B,K,H,W,1), (B,K)."""

    img: jax.Array
    masks: jax.Array
    valid: jax.Array


class Direction(NamedTuple):
    """One direction of the paper's cycle: translate `source` to `target` and back."""

    source: str
    target: str
    forward: str  # generator source -> target
    backward: str  # generator target -> source
    critic: str  # the discriminator of the target domain
    cycle_weight: str  # its lambda in the loss weights
    # the reference's names of this direction's loss terms
    gan_loss: str
    cycle_loss: str
    identity_loss: str
    context_loss: str
    critic_loss: str

    @property
    def loss_names(self) -> tuple[str, ...]:
        """The names of this direction's loss terms, generator's then critic's."""
        return self.gan_loss, self.cycle_loss, self.identity_loss, self.context_loss, self.critic_loss


A_TO_B = Direction("A", "B", "G_A", "G_B", "D_A", "lambda_A", "G_A", "cyc_A", "idt_B", "ctx_A", "D_A")
B_TO_A = Direction("B", "A", "G_B", "G_A", "D_B", "lambda_B", "G_B", "cyc_B", "idt_A", "ctx_B", "D_B")
DIRECTIONS = (A_TO_B, B_TO_A)


class MaskGroup(NamedTuple):
    """The masks a sub-step translates: per domain (B,N,H,W,1) masks and (B,N) validity; its index."""

    masks: dict[str, jax.Array]
    valid: dict[str, jax.Array]
    index: jax.Array


class Carry(NamedTuple):
    """What flows from one mask group to the next."""

    state: TrainState
    img: dict[str, jax.Array]  # current image of each domain (translated by the groups so far)
    fake_masks: dict[str, jax.Array]  # translated sets so far, keyed by the *target* domain
    fake_valid: dict[str, jax.Array]


class Translated(NamedTuple):
    """One direction's translation of the current group (outputs of the generator loss: constants after)."""

    fake_img: jax.Array
    fake_masks: jax.Array  # this group's translated masks
    rec_img: jax.Array
    rec_masks: jax.Array
    set_masks: jax.Array  # the whole translated set so far (all groups' slots)
    set_valid: jax.Array
    critic_vectors: nnx.State  # the target critic's u, v after its call in the generator loss


class Visuals(NamedTuple):
    """The reference's visuals for one direction (batch-first)."""

    real_img: jax.Array
    fake_img: jax.Array
    rec_img: jax.Array  # reconstruction of the first group's translation
    real_union: jax.Array
    fake_union: jax.Array
    rec_union: jax.Array
    rec_masks: jax.Array  # (B,G*N,H,W,1) reconstructed masks, in selection order


def _generate(spec: StepSpec, params: nnx.State, img, masks, valid):
    return nnx.merge(spec.graphdefs[0], params)(img, masks, valid)


def _discriminate(spec: StepSpec, params: nnx.State, vectors: nnx.State, img, masks, valid):
    module = nnx.merge(spec.graphdefs[1], params, vectors, copy=True)
    return module(img, masks, valid), nnx.state(module, SpectralVector)


def _generator_terms(spec: StepSpec, g_params: dict, carry: Carry, d: Direction, masks: jax.Array,
                     valid: jax.Array, group: jax.Array, runs: jax.Array) -> tuple[dict, Translated]:
    """Generator loss terms of one direction for the current group, per the module docstring."""
    lam = getattr(spec.loss, d.cycle_weight)
    img = carry.img[d.source]
    fake_img, fake_masks = _generate(spec, g_params[d.forward], img, masks, valid)
    rec_img, rec_masks = _generate(spec, g_params[d.backward], fake_img, fake_masks, valid)
    idt_img, idt_masks = _generate(spec, g_params[d.backward], img, masks, valid)
    start = group * spec.ins_per
    set_masks = jax.lax.dynamic_update_slice_in_dim(carry.fake_masks[d.target], fake_masks, start, axis=1)
    set_valid = jax.lax.dynamic_update_slice_in_dim(carry.fake_valid[d.target], valid, start, axis=1)
    scores, vectors = _discriminate(spec, carry.state.params[d.critic], carry.state.spectral[d.critic],
                                    fake_img, set_masks, set_valid & runs[:, None])
    terms = {
        d.gan_loss: losses.masked_mean(losses.lsgan_per_sample(scores, 1.0), runs),
        d.cycle_loss: lam * losses.masked_mean(losses.set_l1_per_sample(rec_img, rec_masks, img, masks), runs),
        d.identity_loss: lam * spec.loss.lambda_idt * losses.masked_mean(
            losses.set_l1_per_sample(idt_img, idt_masks, img, masks), runs),
        d.context_loss: lam * spec.loss.lambda_ctx * losses.masked_mean(
            losses.context_per_sample(img, fake_img, masks, fake_masks), runs),
    }
    return terms, Translated(fake_img, fake_masks, rec_img, rec_masks, set_masks, set_valid, vectors)


def _critic_loss(spec: StepSpec, params, vectors, real: RealSet, fake: RealSet, runs):
    """0.5 * (LSGAN(D(real), 1) + LSGAN(D(fake), 0)) over running samples; u, v advance twice."""
    real_scores, vectors = _discriminate(spec, params, vectors, real.img, real.masks, real.valid & runs[:, None])
    fake_scores, vectors = _discriminate(spec, params, vectors, fake.img, fake.masks, fake.valid & runs[:, None])
    loss = 0.5 * (losses.masked_mean(losses.lsgan_per_sample(real_scores, 1.0), runs)
                  + losses.masked_mean(losses.lsgan_per_sample(fake_scores, 0.0), runs))
    return loss, vectors


class GroupOutputs(NamedTuple):
    """Per-group results: loss terms, whether each direction ran, gradients, each direction's translation."""

    losses: dict[str, jax.Array]
    ran: dict[str, jax.Array]  # by source domain
    grads: dict[str, nnx.State]
    translated: dict[str, Translated]  # by source domain


def group_step(spec: StepSpec, carry: Carry, group: MaskGroup, real: dict[str, RealSet],
               key: jax.Array) -> tuple[Carry, GroupOutputs]:
    """The reference's sub-step on one mask group: G losses, G Adam step, D Adam steps."""
    state = carry.state
    lr = spec.learning_rate(state.step)
    runs = {d.source: jnp.any(group.valid[d.source], axis=1) for d in DIRECTIONS}
    ran = {source: jnp.any(r) for source, r in runs.items()}

    def generator_loss(g_params):
        terms, translated = {}, {}
        for d in DIRECTIONS:
            d_terms, translated[d.source] = _generator_terms(
                spec, g_params, carry, d, group.masks[d.source], group.valid[d.source], group.index, runs[d.source])
            terms.update(d_terms)
        return sum(terms.values()), (terms, translated)

    g_params = {name: state.params[name] for name in GENERATORS}
    (loss_g, (terms, translated)), g_grads = jax.value_and_grad(generator_loss, has_aux=True)(g_params)
    params, opt, spectral = dict(state.params), dict(state.opt), dict(state.spectral)
    any_ran = ran["A"] | ran["B"]
    for name in GENERATORS:
        params[name], opt[name] = optim.adam_step(spec.train, lr, params[name], opt[name], g_grads[name], any_ran)

    pools, grads = dict(state.pools), dict(g_grads)
    pool_keys = jax.random.split(key, 2)
    for i, d in enumerate(DIRECTIONS):
        out, critic, did_run = translated[d.source], d.critic, ran[d.source]
        spectral[critic] = optim.where(did_run, out.critic_vectors, spectral[critic])  # the G step's D call
        new_pool, shown = pool.query(pools[d.target], pool_keys[i], out.fake_img, out.set_masks, out.set_valid,
                                     runs[d.source])
        (loss_d, vectors), d_grads = jax.value_and_grad(_critic_loss, argnums=1, has_aux=True)(
            spec, params[critic], spectral[critic], real[d.target], RealSet(*shown), runs[d.source])
        d_lr = lr * spec.train.d_lr_mult
        params[critic], opt[critic] = optim.adam_step(spec.train, d_lr, params[critic], opt[critic], d_grads, did_run)
        spectral[critic] = optim.where(did_run, vectors, spectral[critic])
        pools[d.target] = new_pool
        terms[d.critic_loss] = loss_d
        grads[critic] = d_grads

    terms["G"] = loss_g
    new_state = state.replace(params=params, opt=opt, spectral=spectral, pools=pools)
    next_img, fake_masks, fake_valid = {}, dict(carry.fake_masks), dict(carry.fake_valid)
    for d in DIRECTIONS:
        out = translated[d.source]
        keep = runs[d.source][:, None, None, None]
        next_img[d.source] = jnp.where(keep, out.fake_img, carry.img[d.source])
        fake_masks[d.target], fake_valid[d.target] = out.set_masks, out.set_valid
    new_carry = Carry(new_state, next_img, fake_masks, fake_valid)
    return new_carry, GroupOutputs(terms, ran, grads, translated)


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


def mask_groups(spec: StepSpec, real: dict[str, RealSet]) -> MaskGroup:
    """All groups stacked (a leading G axis on every leaf): the scan's inputs."""
    groups = {d: instances.split_groups(real[d].masks, real[d].valid, spec.ins_per) for d in real}
    return MaskGroup({d: g[0] for d, g in groups.items()}, {d: g[1] for d, g in groups.items()},
                     jnp.arange(spec.n_groups))


def _keys(spec: StepSpec, state: TrainState) -> tuple[jax.Array, jax.Array]:
    """(the next state's key, one pool key per group), from the state's key."""
    key, subkey = jax.random.split(jax.random.wrap_key_data(state.rng))
    return key, jax.random.split(subkey, spec.n_groups)


def sub_steps(spec: StepSpec, state: TrainState, batch: dict[str, jax.Array]):
    """The groups of `train_step` one by one (same sub-step, same keys), yielding (carry, GroupOutputs)
    after each: the iteration as the reference runs it, to inspect (parity)."""
    real = select_sets(spec, batch)
    groups = mask_groups(spec, real)
    _, group_keys = _keys(spec, state)
    step = jax.jit(group_step, static_argnums=0)
    carry = initial_carry(spec, state, real)
    for i in range(spec.n_groups):
        carry, out = step(spec, carry, jax.tree.map(lambda x: x[i], groups), real, group_keys[i])
        yield carry, out


def _skipped_group(spec: StepSpec, carry: Carry, group: MaskGroup, _key: jax.Array):
    """What `group_step` gives for a group with no valid slot in either domain, without running it: the
    carry unchanged (no update, no pool write), zero loss terms, no run flags, the group's masks as
    their own reconstruction (empty slots pass through). Its reconstructed image, which no visual shows
    (only group 0's is), is the current image."""
    zero = jnp.zeros((), DTYPES[spec.model.dtype])
    terms = {name: zero for d in DIRECTIONS for name in d.loss_names}
    flags = {f"ran_{d.source}": jnp.zeros((), bool) for d in DIRECTIONS}
    recs = {d.source: (carry.img[d.source], group.masks[d.source]) for d in DIRECTIONS}
    return carry, ({**terms, "G": zero, **flags}, recs)


def train_step(spec: StepSpec, state: TrainState,
               batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array], dict[str, Visuals]]:
    """One iteration on a batch (img_X, masks_X, valid_X for X in A, B).

    Returns the new state, the per-group loss terms and run flags (arrays of shape (n_groups,)), and
    the visuals of both directions (keyed by source domain).
    """
    real = select_sets(spec, batch)
    key, group_keys = _keys(spec, state)

    def run(carry, group, group_key):
        carry, out = group_step(spec, carry, group, real, group_key)
        recs = {s: (t.rec_img, t.rec_masks) for s, t in out.translated.items()}
        flags = {f"ran_{s}": r for s, r in out.ran.items()}
        return carry, ({**out.losses, **flags}, recs)

    def body(carry, inputs):
        group, group_key = inputs
        runs = (group.index == 0) | jnp.any(group.valid["A"]) | jnp.any(group.valid["B"])
        return jax.lax.cond(runs, run, functools.partial(_skipped_group, spec), carry, group, group_key)

    carry, (metrics, recs) = jax.lax.scan(body, initial_carry(spec, state, real),
                                          (mask_groups(spec, real), group_keys), unroll=spec.unroll_groups)
    new_state = carry.state.replace(step=state.step + 1, rng=jax.random.key_data(key))
    visuals = {}
    for d in DIRECTIONS:
        rec_img, rec_masks = recs[d.source]
        rec_masks = instances.merge_groups(rec_masks)
        visuals[d.source] = Visuals(
            real_img=real[d.source].img, fake_img=carry.img[d.source], rec_img=rec_img[0],
            real_union=losses.merge_masks(real[d.source].masks),
            fake_union=losses.merge_masks(carry.fake_masks[d.target]),
            rec_union=losses.merge_masks(rec_masks), rec_masks=rec_masks)
    return new_state, metrics, visuals


VISUAL_COLUMNS = {"real_img": "real\nimage", "fake_img": "fake\nimage", "rec_img": "rec\nimage",
                  "real_union": "real\nmasks", "fake_union": "fake\nmasks", "rec_union": "rec\nmasks"}


def visual_rows(visuals: dict[str, Visuals]) -> dict[str, dict[str, jax.Array]]:
    """The sample grid's rows: per direction, the real / translated / reconstructed image and mask union."""
    return {f"{d.source}->{d.target}": {label: getattr(visuals[d.source], name)
                                        for name, label in VISUAL_COLUMNS.items()} for d in DIRECTIONS}


def summarize(metrics: dict[str, Any]) -> dict[str, float]:
    """Per-iteration scalars from per-group metrics: each direction's terms averaged over the groups
    in which it ran (0 if none), the total G loss over groups in which anything ran."""
    out = {}
    for d in DIRECTIONS:
        ran = metrics[f"ran_{d.source}"].astype(float)
        for name in d.loss_names:
            out[name] = float((metrics[name] * ran).sum() / max(ran.sum(), 1.0))
    any_ran = (metrics["ran_A"] | metrics["ran_B"]).astype(float)
    out["G"] = float((metrics["G"] * any_ran).sum() / max(any_ran.sum(), 1.0))
    return out
