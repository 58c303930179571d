"""The training iteration: image pool, LR schedule, per-sample skipping and untouched skipped D."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import TINY

from instagan_jax import optim, pool
from instagan_jax.config import TrainConfig
from instagan_jax.methods.instagan import step as training
from instagan_jax.methods.instagan.config import InstaganTrain

SIZE = 32


def _masks(rng: np.random.Generator, batch: int, counts: list[int], slots: int = 4) -> np.ndarray:
    """(B, slots, H, W, 1) masks: sample b has counts[b] rectangles of different areas."""
    masks = -np.ones((batch, slots, SIZE, SIZE, 1), np.float32)
    for b, n in enumerate(counts):
        for k in range(n):
            top, left = rng.integers(0, SIZE // 2, 2)
            side = 4 + 3 * k
            masks[b, k, top:top + side, left:left + side] = 1.0
    return masks


def _batch(counts_a: list[int], counts_b: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for d, counts in (("A", counts_a), ("B", counts_b)):
        masks = _masks(rng, len(counts), counts)
        out[f"img_{d}"] = rng.uniform(-1, 1, (len(counts), SIZE, SIZE, 3)).astype(np.float32)
        out[f"masks_{d}"] = masks
        out[f"valid_{d}"] = np.any(masks > -1, axis=(2, 3, 4))
    return out


SPEC = training.StepSpec(TINY, SIZE, SIZE, train=InstaganTrain(ins_max=4, ins_per=2, pool_size=3))


@functools.cache
def _iteration():
    return jax.jit(functools.partial(training.train_step, SPEC))


def _pool_inputs(value: float, batch: int = 1):
    img = jnp.full((batch, 2, 2, 3), value)
    masks = jnp.full((batch, 1, 2, 2, 1), value)
    return img, masks, jnp.ones((batch, 1), bool)


_query = jax.jit(pool.query)


def test_pool_returns_new_sets_until_full_then_swaps_half_the_time():
    p = pool.empty_pool(3, 2, 2, 3, 1)
    key = jax.random.key(0)
    for i in range(3):
        p, (img, _, _) = _query(p, jax.random.fold_in(key, i), *_pool_inputs(float(i)), jnp.array([True]))
        assert float(img[0, 0, 0, 0]) == i
    assert int(p.count) == 3
    returned_old = 0
    for i in range(3, 203):
        stored_before = set(np.asarray(p.img[:, 0, 0, 0]).tolist())
        p, (img, _, _) = _query(p, jax.random.fold_in(key, i), *_pool_inputs(float(i)), jnp.array([True]))
        out = float(img[0, 0, 0, 0])
        assert out == i or out in stored_before
        returned_old += out != i
        assert i in np.asarray(p.img[:, 0, 0, 0]).tolist() or out == i
    assert 70 <= returned_old <= 130  # p = 1/2 over 200 queries (binomial sd ~7)


def test_pool_ignores_inactive_samples():
    p = pool.empty_pool(3, 2, 2, 3, 1)
    p, _ = pool.query(p, jax.random.key(1), *_pool_inputs(5.0, batch=2), jnp.array([False, True]))
    assert int(p.count) == 1


def test_lambda_schedule_is_constant_then_linear_to_zero():
    train = TrainConfig(lr=1.0, niter=3, niter_decay=4)
    lrs = [float(optim.learning_rate(train, 10, jnp.array(e * 10 + 5))) for e in range(7)]
    # epochs 0-2 at lr; then 1 - k/(niter_decay + 1) for the k-th decay epoch (the reference's formula)
    np.testing.assert_allclose(lrs, [1, 1, 1, 0.8, 0.6, 0.4, 0.2], atol=1e-6)


@pytest.fixture(scope="module")
def state():
    return training.init_state(SPEC, seed=0)


def test_adam_step_is_optax_adam_and_a_false_flag_changes_nothing():
    """Three steps of `optim.adam_step` against optax's Adam (same lr), then one with apply=False."""
    train = TrainConfig(lr=0.01)
    rng = np.random.default_rng(5)
    params = {"w": jnp.asarray(rng.standard_normal((3, 4)), jnp.float32), "b": jnp.zeros((4,))}
    reference = optax.adam(train.lr, b1=train.beta1, b2=train.beta2, eps=train.eps)
    ours_p, ours_s, ref_p, ref_s = params, optim.adam(train).init(params), params, reference.init(params)
    for _ in range(3):
        grads = jax.tree.map(lambda x: jnp.asarray(rng.standard_normal(x.shape), jnp.float32), params)
        ours_p, ours_s = optim.adam_step(train, train.lr, ours_p, ours_s, grads, jnp.array(True))
        updates, ref_s = reference.update(grads, ref_s, ref_p)
        ref_p = optax.apply_updates(ref_p, updates)
        for name in params:
            np.testing.assert_allclose(ours_p[name], ref_p[name], rtol=0, atol=1e-6, err_msg=name)
    held_p, held_s = optim.adam_step(train, train.lr, ours_p, ours_s, grads, jnp.array(False))
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)),
                                            (held_p, held_s), (ours_p, ours_s))))


def test_a_sample_without_instances_is_masked_out_of_its_direction(state):
    """Batch [x, y] where y has no A instance: the A-direction losses of the first group equal those
    of [x, x], i.e. of x alone (the first group runs before any update; one compiled batch size)."""
    pair = _batch([2, 0], [3, 1])
    x_twice = {k: v[[0, 0]] for k, v in pair.items()}
    _, metrics_pair, _ = _iteration()(state, pair)
    _, metrics_x, _ = _iteration()(state, x_twice)
    for name in ("G_A", "cyc_A", "idt_B", "ctx_A"):
        np.testing.assert_allclose(metrics_pair[name][0], metrics_x[name][0], rtol=1e-5, err_msg=name)
    assert bool(metrics_pair["ran_A"][0]) and not bool(metrics_pair["ran_A"][1])


def test_a_direction_without_running_samples_leaves_its_discriminator_untouched(state):
    """No A instance anywhere: D_A, its Adam state and spectral vectors stay; G and D_B move."""
    new, metrics, _ = _iteration()(state, _batch([0, 0], [2, 1]))
    for tree in ("params", "opt", "spectral"):
        same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)),
                            getattr(new, tree)["D_A"], getattr(state, tree)["D_A"])
        assert all(jax.tree.leaves(same)), tree
    assert not np.any(metrics["ran_A"]) and np.all(metrics["D_A"] == 0)
    for name in ("G_A", "G_B", "D_B"):
        moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)),
                                             new.params[name], state.params[name]))
        assert not all(moved), name
    assert int(new.step) == 1


def test_a_group_with_no_instance_anywhere_is_skipped_and_equals_running_it():
    """ins_max 4, ins_per 2, at most 2 instances per sample: the second group has no valid slot, and
    `train_step` skips its work. Its state, losses and visuals equal those of `sub_steps`, which runs
    every group (float64: agreement to rounding)."""
    from instagan_jax.nn.build import x64_scope

    batch = _batch([2, 1], [1, 2])
    with x64_scope("float64"):
        spec = training.StepSpec(dataclasses.replace(TINY, dtype="float64"), SIZE, SIZE, train=SPEC.train)
        state = training.init_state(spec, seed=3)
        batch64 = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in batch.items()}
        new, metrics, _ = jax.jit(functools.partial(training.train_step, spec))(state, batch64)
        carry, outputs = None, []
        for carry, out in training.sub_steps(spec, state, batch64):
            outputs.append(out)
    assert not bool(outputs[1].ran["A"]) and not bool(outputs[1].ran["B"])
    assert not bool(metrics["ran_A"][1]) and not bool(metrics["ran_B"][1])
    for name, value in outputs[1].losses.items():
        assert float(metrics[name][1]) == float(value) == 0.0, name
    expected = carry.state.replace(step=new.step, rng=new.rng)
    differences = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a, np.float64)
                                                                                 - np.asarray(b, np.float64)))),
                                               new, expected))
    assert max(differences) < 1e-9
