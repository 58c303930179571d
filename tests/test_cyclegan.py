"""CycleGAN: the method's interface, state_dict conversion, batch > 1, and parity with the reference fork."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SHARED, TINY, require_shared

from instagan_jax import cli, methods
from instagan_jax.config import Config, DataConfig, TrainConfig
from instagan_jax.methods import load_config
from instagan_jax.methods.cyclegan import step as cyclegan
from instagan_jax.methods.cyclegan.reference import (
    infer_model_config,
    load_reference,
    to_reference,
)
from instagan_jax.nn.build import abstract
from instagan_jax.nn.losses import CycleLossWeights

CYCLEGAN_F64 = SHARED / "parity" / "cyclegan_small_f64.npz"
TINY_CONFIG = Config(method="cyclegan", model=TINY, loss=CycleLossWeights(), data=DataConfig(crop_size=(32, 32)),
                     train=TrainConfig(pool_size=4))
METRICS = {"D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B", "G"}


def test_float64_fixture_passes_every_check(capsys):
    """Round trip, forwards and two iterations (losses, full state with u, v, visuals), all judged
    at the fixture's guidance: atol 1e-9 on outputs and updated values, rtol 1e-9 on losses."""
    fixture = require_shared(CYCLEGAN_F64)
    assert cli.main(["parity", str(fixture)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [line for line in lines if line.endswith((" ok", " FAIL", " info"))]
    assert len(rows) == 52 and all(row.endswith(" ok") for row in rows)
    assert lines[-1] == "parity: 52/52 checks within tolerance"
    tolerances = {row.split()[-5]: (row.split()[-3], float(row.split()[-2])) for row in rows}  # kind: mode, tol
    assert tolerances == {"exact": ("atol", 0.0), "outputs": ("atol", 1e-9), "losses": ("rtol", 1e-9),
                          "updated": ("atol", 1e-9)}
    for prefix in ("state_dict round trip D_B", "fwd/D_A (of the real B)", "fwd/D_A_after/",
                   "train/iter1/loss_idt_B", "train/iter1/state/D_B/* (10 spectral-norm vectors)",
                   "train/iter1/state/G_A/* (20 tensors)", "train/iter1/visual/idt_A"):
        assert any(row.startswith(prefix) for row in rows), prefix


def test_method_is_registered_and_the_config_builds_its_spec():
    method = methods.get("cyclegan")
    config = load_config("cyclegan_shapes")
    spec = method.make_spec(config, 250)
    assert config.method == "cyclegan" and (spec.height, spec.width) == (64, 64)
    assert spec.model is config.model and spec.loss is config.loss and spec.train is config.train
    with pytest.raises(ValueError, match="method"):
        methods.config_from_dict({"method": "cycle_gan"})


def test_state_dict_round_trip_has_the_reference_keys():
    modules = {name: cyclegan.fresh_network(name, TINY) for name in cyclegan.NETWORKS}
    state_dicts = {name: to_reference(module) for name, module in modules.items()}
    g_keys, d_keys = list(state_dicts["G_A"]), list(state_dicts["D_A"])
    # n_blocks = 1: the block is model.10, the decoder's convs model.11, model.14 and model.18
    assert g_keys[:2] == ["model.1.weight", "model.1.bias"] and g_keys[-2:] == ["model.18.weight", "model.18.bias"]
    assert "model.10.conv_block.5.weight" in g_keys and state_dicts["G_A"]["model.11.weight"].shape == (16, 8, 3, 3)
    assert d_keys[:4] == [f"model.0.module.{leaf}" for leaf in ("bias", "weight_u", "weight_v", "weight_bar")]
    assert d_keys[-1] == "model.11.module.weight_bar" and "model.8.module.bias" in d_keys
    assert infer_model_config(state_dicts, dataclasses.replace(TINY, ngf=64)) == TINY
    for name, state_dict in state_dicts.items():
        module = abstract(cyclegan.network_class(name), TINY)
        load_reference(module, state_dict)
        again = to_reference(module)
        assert list(again) == list(state_dict)
        assert all(np.array_equal(again[k], state_dict[k]) for k in state_dict)
    with pytest.raises(KeyError, match="missing"):
        load_reference(abstract(cyclegan.ResnetGenerator, TINY), state_dicts["D_A"])


@pytest.fixture(scope="module")
def tiny():
    """Spec, fresh state and the jitted float32 train step of a tiny CycleGAN (32x32, ngf = ndf = 4)."""
    spec = cyclegan.Spec.from_config(TINY_CONFIG, 10)
    return spec, cyclegan.init_state(spec, seed=1), jax.jit(cyclegan.train_step, static_argnums=0)


def _images(seed: int, batch: int) -> dict[str, jax.Array]:
    keys = jax.random.split(jax.random.key(seed), 2)
    return {f"img_{d}": jax.random.uniform(k, (batch, 32, 32, 3), minval=-1.0, maxval=1.0)
            for d, k in zip("AB", keys)}


@pytest.mark.slow  # ~20 s; test_methods trains the method at batch 2 through the loop
def test_float32_step_jitted_at_batch_2_trains_every_network(tiny):
    spec, state, step = tiny
    batch = {**_images(0, 2), "masks_A": jnp.zeros((2, 3, 32, 32, 1)), "valid_A": jnp.ones((2, 3), bool)}
    new, metrics, visuals = step(spec, state, batch)
    new, metrics, visuals = step(spec, new, batch)
    assert set(metrics) == METRICS and all(np.isfinite(float(v)) for v in metrics.values())
    assert int(new.step) == 2 and all(int(p.count) == 4 for p in new.pools.values())
    assert set(visuals) == {"A", "B"} and all(set(row) == {"real", "fake", "rec", "idt"} for row in visuals.values())
    assert all(image.shape == (2, 32, 32, 3) and image.dtype == jnp.float32
               for row in visuals.values() for image in row.values())
    for name in cyclegan.NETWORKS:
        before, after = jax.tree.leaves(state.params[name]), jax.tree.leaves(new.params[name])
        assert all(a.dtype == jnp.float32 for a in after)
        assert all(not np.array_equal(a, b) for a, b in zip(before, after)), name
    for name in cyclegan.DISCRIMINATORS:  # u, v advanced (the G step's D call, then two in the D step)
        assert not np.array_equal(jax.tree.leaves(state.spectral[name])[0], jax.tree.leaves(new.spectral[name])[0])
    assert cyclegan.summarize(jax.device_get(metrics)).keys() == METRICS


@pytest.mark.slow  # ~30 s; `make test-all` runs it
def test_batch_of_2_losses_are_the_means_of_each_sample_alone(tiny):
    """From one state, every loss of a batch of two is the mean of that loss on each sample alone:
    instance norm is per sample, each D call advances u, v once whatever the batch, the pool is filling."""
    spec, state, step = tiny
    pair = _images(3, 2)
    _, together, visuals = step(spec, state, pair)
    alone = [step(spec, state, {k: v[i:i + 1] for k, v in pair.items()}) for i in range(2)]
    for name in METRICS:
        mean = (float(alone[0][1][name]) + float(alone[1][1][name])) / 2
        assert float(together[name]) == pytest.approx(mean, rel=1e-5), name
    for i, (_, _, single) in enumerate(alone):
        np.testing.assert_allclose(visuals["A"]["rec"][i:i + 1], single["A"]["rec"], atol=1e-5)
        np.testing.assert_allclose(visuals["B"]["fake"][i:i + 1], single["B"]["fake"], atol=1e-5)


def test_translate_is_the_generator_forward(tiny):
    spec, state, _ = tiny
    generator = cyclegan.modules(spec, state)["G_A"]
    images = _images(5, 1)["img_A"]
    out = cyclegan.translate(generator, images)
    assert out.shape == images.shape and float(jnp.max(jnp.abs(out))) <= 1.0
    np.testing.assert_allclose(out, generator(images), atol=1e-6)


def test_without_identity_loss_no_identity_pass_runs(tiny):
    """lambda_idt = 0: as the reference, no identity translation (no idt visual), idt losses 0."""
    spec, state, _ = tiny
    spec = dataclasses.replace(spec, loss=dataclasses.replace(spec.loss, lambda_idt=0.0))
    _, metrics, visuals = jax.eval_shape(functools.partial(cyclegan.train_step, spec), state, _images(0, 1))
    assert set(metrics) == METRICS and all(set(row) == {"real", "fake", "rec"} for row in visuals.values())
