"""Mixed precision (`model.compute_dtype=bfloat16`): bf16 convs, float32 parameters, Adam and losses.

Tiny networks (ngf = ndf = 2, no ResNet blocks, 24x24 images). The default suite checks the config,
the compiled graphs, a discriminator call and one Adam step of the set generator; the whole
InstaGAN and CycleGAN iterations (float32 and bf16 from the same state) are marked slow: tracing and
compiling a whole iteration twice takes ~40-90 s on a busy 2-core CPU even at this size.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from instagan_jax import methods, optim
from instagan_jax.config import TrainConfig
from instagan_jax.methods import config_from_dict, load_config
from instagan_jax.methods.cyclegan import step as cyclegan
from instagan_jax.methods.instagan import step as training
from instagan_jax.methods.instagan.config import InstaganTrain
from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
from instagan_jax.nn import losses
from instagan_jax.nn.build import ResnetModel, create

F32 = ResnetModel(ngf=2, ndf=2, n_blocks=0)
BF16 = dataclasses.replace(F32, compute_dtype="bfloat16")
SIZE = 24
# bf16 keeps 8 significant bits (relative rounding 2^-9 ~ 0.2%). Measured on these tiny fresh models
# (XLA CPU): the L1 / cycle / identity / context terms move by < 0.3%, the GAN terms (LSGAN of scores
# after ~6 bf16 layers) by up to ~6% relative, 0.015 absolute. A loss term x of the bf16 step must
# satisfy |x_bf16 - x_f32| <= LOSS_RTOL * |x_f32| + LOSS_ATOL (loose: other backends round differently).
LOSS_RTOL, LOSS_ATOL = 0.05, 0.03


# XLA CPU's cheapest compile (2-3x faster here): these tests compare float32 with bf16, not compilers.
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _float_dtypes(tree) -> set[str]:
    return {str(x.dtype) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)}


def _assert_losses_close(ours: dict, reference: dict) -> None:
    assert set(ours) == set(reference)
    for name, value in ours.items():
        a, b = np.asarray(value, np.float64), np.asarray(reference[name], np.float64)
        assert np.all(np.isfinite(a)), (name, a)
        assert np.all(np.abs(a - b) <= LOSS_RTOL * np.abs(b) + LOSS_ATOL), (name, a, b)


def test_config_accepts_bfloat16_and_rejects_float64_and_unknown_names():
    assert ResnetModel().compute_dtype == "float32"
    assert load_config("default", ["model.compute_dtype=bfloat16"]).model.compute_dtype == "bfloat16"
    ResnetModel(dtype="float64")  # the default compute dtype goes with float64 (it computes in float64)
    with pytest.raises(ValueError, match="model.compute_dtype bfloat16 needs model.dtype float32.*'float64'"):
        ResnetModel(dtype="float64", compute_dtype="bfloat16")
    with pytest.raises(ValueError, match="model.compute_dtype bfloat16 needs model.dtype float32"):
        config_from_dict({"model": {"dtype": "float64", "compute_dtype": "bfloat16"}})
    for name in ("float16", "bf16", "float64"):
        with pytest.raises(ValueError, match=f"model.compute_dtype must be one of .*got '{name}'"):
            config_from_dict({"model": {"compute_dtype": name}})
    with pytest.raises(ValueError, match="config key model.compute_dtype: expected a string"):
        config_from_dict({"model": {"compute_dtype": 16}})


def _conv_dtypes(jaxpr) -> set[tuple[str, str]]:
    """(lhs dtype, rhs dtype) of every conv in a jaxpr, sub-jaxprs (custom VJPs, scans) included."""
    found = set()

    def walk(j):
        for eqn in j.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                found.add(tuple(str(v.aval.dtype) for v in eqn.invars))
            for param in eqn.params.values():
                inner = getattr(param, "jaxpr", None)
                if inner is not None and hasattr(inner, "eqns"):
                    walk(inner)
                elif hasattr(param, "eqns"):
                    walk(param)

    walk(jaxpr.jaxpr)
    return found


def _generator_jaxpr(model: ResnetModel):
    img = jnp.zeros((1, SIZE, SIZE, 3))
    masks, valid = -jnp.ones((1, 2, SIZE, SIZE, 1)), jnp.ones((1, 2), bool)
    generator = create(SetGenerator, model)
    return generator, jax.make_jaxpr(lambda g: g(img, masks, valid))(generator)


def test_generator_convs_are_bf16_only_under_bfloat16_and_outputs_float32():
    generator, jaxpr = _generator_jaxpr(BF16)
    assert _float_dtypes(jax.tree.leaves(generator)) == {"float32"}  # parameters stay float32
    text = str(jaxpr)
    assert "bf16" in text and "conv_general_dilated" in text
    assert _conv_dtypes(jaxpr) == {("bfloat16", "bfloat16")}
    assert [str(v.aval.dtype) for v in jaxpr.jaxpr.outvars] == ["float32", "float32"]

    _, jaxpr32 = _generator_jaxpr(F32)
    assert "bf16" not in str(jaxpr32)
    assert _conv_dtypes(jaxpr32) == {("float32", "float32")}


def test_discriminator_spectral_norm_stays_float32_under_bfloat16():
    disc = create(SetDiscriminator, BF16)
    img, masks, valid = jnp.zeros((1, SIZE, SIZE, 3)), -jnp.ones((1, 2, SIZE, SIZE, 1)), jnp.ones((1, 2), bool)
    call = jax.jit(lambda d: (d(img, masks, valid), jax.tree.leaves(d))).lower(disc).compile(_FAST_COMPILE)
    scores, state = call(disc)
    assert scores.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(scores)))
    assert _float_dtypes(state) == {"float32"}  # kernels, biases, u, v


def _sets_batch(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for d in "AB":
        masks = -np.ones((1, 2, SIZE, SIZE, 1), np.float32)
        masks[0, 0, 2:12, 3:15] = 1.0
        masks[0, 1, 10:20, 8:22] = 1.0
        out.update({f"img_{d}": rng.uniform(-1, 1, (1, SIZE, SIZE, 3)).astype(np.float32),
                    f"masks_{d}": masks, f"valid_{d}": np.ones((1, 2), bool)})
    return out


def _generator_adam_step(g_def, g_params, opt_state, img, masks, valid):
    """One Adam step of G on 10 |G(x)_img - x_img| + mean |G(x)_masks - x_masks|^2 (the discriminator
    has its own test): (loss terms, outputs float32?, new params, new Adam state, gradients)."""

    def loss(params):
        fake_img, fake_masks = nnx.merge(g_def, params)(img, masks, valid)
        terms = {"img": 10.0 * jnp.mean(jnp.abs(fake_img - img)),
                 "masks": jnp.mean(losses.lsgan_per_sample(fake_masks - masks, 0.0))}
        return terms["img"] + terms["masks"], (terms, fake_img.dtype == jnp.float32,
                                               fake_masks.dtype == jnp.float32)

    (_, (terms, *f32_outputs)), grads = jax.value_and_grad(loss, has_aux=True)(g_params)
    params, opt_state = optim.adam_step(TrainConfig(), 2e-4, g_params, opt_state, grads)
    return terms, f32_outputs, params, opt_state, grads


def test_set_generator_adam_step_under_bfloat16_keeps_float32_state_and_close_losses():
    batch = _sets_batch()
    inputs = (jnp.asarray(batch["img_A"]), jnp.asarray(batch["masks_A"]), jnp.asarray(batch["valid_A"]))
    results = {}
    for model in (F32, BF16):
        g_def, g_params = nnx.split(create(SetGenerator, model, seed=0))
        args = (g_params, optim.adam(TrainConfig()).init(g_params), *inputs)
        step = jax.jit(_generator_adam_step, static_argnums=0).lower(g_def, *args)
        results[model.compute_dtype] = (g_params, *step.compile(_FAST_COMPILE)(*args))
    init32, terms32, _, _, _, grads32 = results["float32"]
    init16, terms16, f32_outputs, params, opt_state, grads16 = results["bfloat16"]
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), init16, init32))  # same init
    assert all(bool(x) for x in f32_outputs)  # G's images and masks reach the losses as float32
    assert _float_dtypes(params) == _float_dtypes(opt_state) == _float_dtypes(grads16) == {"float32"}
    _assert_losses_close(terms16, terms32)
    # the gradients point the same way: cosine similarity of the flattened gradients
    flat16, flat32 = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(g)]) for g in (grads16, grads32))
    cosine = flat16 @ flat32 / (np.linalg.norm(flat16) * np.linalg.norm(flat32))
    assert cosine > 0.9


def _run_step(train_step, spec, state, batch):
    compiled = jax.jit(train_step, static_argnums=0).lower(spec, state, batch).compile(_FAST_COMPILE)
    return compiled(state, batch)


def _check_step(train_step, spec32, spec16, state, batch):
    """Run the float32 and the bf16-compute step from the same state and batch; return both results."""
    new32, metrics32, _ = _run_step(train_step, spec32, state, batch)
    new16, metrics16, _ = _run_step(train_step, spec16, state, batch)
    assert _float_dtypes(new16.params) == {"float32"}
    assert _float_dtypes(new16.opt) == {"float32"}  # Adam's moments
    assert jax.tree.structure(new16.opt) == jax.tree.structure(new32.opt)
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new16.params, state.params))
    assert any(moved)
    return (new32, metrics32), (new16, metrics16)


@pytest.mark.slow  # ~40-90 s: two whole iterations traced and compiled
def test_instagan_bf16_train_step_keeps_float32_state_and_close_losses():
    train = InstaganTrain(ins_max=2, ins_per=2, pool_size=0)
    spec32 = training.StepSpec(F32, SIZE, SIZE, train=train)
    spec16 = dataclasses.replace(spec32, model=BF16)
    state = training.init_state(spec32, seed=0)
    (_, m32), (new16, m16) = _check_step(training.train_step, spec32, spec16, state, _sets_batch())
    assert _float_dtypes(new16.spectral) == {"float32"}
    losses = {k: v for k, v in m16.items() if not k.startswith("ran_")}
    _assert_losses_close(losses, {k: m32[k] for k in losses})
    assert all(np.all(np.asarray(v)) for k, v in m16.items() if k.startswith("ran_"))


@pytest.mark.slow  # ~30-80 s: two whole iterations traced and compiled
def test_cyclegan_bf16_train_step_keeps_float32_state_and_close_losses():
    config = config_from_dict({"method": "cyclegan", "model": dataclasses.asdict(F32),
                               "data": {"crop_size": [SIZE, SIZE]}, "train": {"pool_size": 0}})
    spec32 = methods.get("cyclegan").make_spec(config, 1)
    spec16 = dataclasses.replace(spec32, model=BF16)
    state = cyclegan.init_state(spec32, seed=0)
    keys = jax.random.split(jax.random.key(3), 2)
    batch = {f"img_{d}": jax.random.uniform(k, (1, SIZE, SIZE, 3), minval=-1.0, maxval=1.0)
             for d, k in zip("AB", keys)}
    (_, m32), (_, m16) = _check_step(cyclegan.train_step, spec32, spec16, state, batch)
    _assert_losses_close(m16, m32)
