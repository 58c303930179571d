"""Losses on the reference's own recorded tensors, and the instance-set utilities."""

import jax.numpy as jnp
import numpy as np
import pytest

from instagan_jax.methods.instagan import losses
from instagan_jax.methods.instagan.config import InstaganLoss
from instagan_jax.methods.instagan.parity import load_fixture, split_set
from instagan_jax.nn import instances
from instagan_jax.parity.common import to_nhwc


@pytest.fixture(scope="module")
def step0(reference_small):
    """Sub-step 0 of the reference's training iteration: inputs, network outputs, logged losses."""
    fixture = load_fixture(reference_small)
    a = fixture.arrays
    calls = {k.split("/")[2]: a[k] for k in a if k.startswith("train/call/")}
    return a, calls, fixture.meta["train_steps"][0]


def test_generator_losses_equal_reference_step0(step0):
    a, calls, logged = step0
    real_img = to_nhwc(a["train/step0/real_A_img_sng"])
    real_masks = jnp.asarray(a["train/step0/real_A_seg_sng"])[..., None]
    fake_img, fake_masks = split_set(calls["000_s0_fwd_G_A"], 3)
    rec_img, rec_masks = split_set(calls["001_s0_fwd_G_B"], 3)
    idt_img, idt_masks = split_set(calls["005_s0_G_G_B"], 3)
    w = InstaganLoss()
    cases = {
        "loss_G_A": losses.masked_mean(losses.lsgan_per_sample(jnp.asarray(calls["004_s0_G_D_A"]), 1.0)),
        "loss_cyc_A": losses.masked_mean(losses.set_l1_per_sample(rec_img, rec_masks, real_img, real_masks))
        * w.lambda_A,
        "loss_idt_B": losses.masked_mean(losses.set_l1_per_sample(idt_img, idt_masks, real_img, real_masks))
        * w.lambda_A * w.lambda_idt,
        "loss_ctx_A": losses.masked_mean(losses.context_per_sample(real_img, fake_img, real_masks, fake_masks))
        * w.lambda_A * w.lambda_ctx,
    }
    for name, value in cases.items():
        np.testing.assert_allclose(float(value), logged[name], rtol=1e-5, err_msg=name)


def test_discriminator_loss_equals_reference_step0(step0):
    _, calls, logged = step0
    real = losses.lsgan_per_sample(jnp.asarray(calls["008_s0_DA_D_A"]), 1.0)
    fake = losses.lsgan_per_sample(jnp.asarray(calls["009_s0_DA_D_A"]), 0.0)
    np.testing.assert_allclose(float(0.5 * (real.mean() + fake.mean())), logged["loss_D_A"], rtol=1e-5)


def test_context_weight_is_background_indicator():
    real = jnp.full((1, 2, 4, 4, 1), -1.0).at[0, 0, :2, :2].set(1.0)
    fake = jnp.full((1, 2, 4, 4, 1), -1.0).at[0, 1, 3, 3].set(1.0)
    weight = np.asarray(losses.context_weight(real, fake))[0, :, :, 0]
    expected = np.ones((4, 4))
    expected[:2, :2] = 0
    expected[3, 3] = 0
    np.testing.assert_array_equal(weight, expected)


def test_merge_is_clamped_union_of_soft_masks():
    masks = jnp.array([-1.0, 0.0, 0.0, 1.0]).reshape(1, 4, 1, 1, 1)
    # (m + 1) / 2 = 0, 0.5, 0.5, 1 -> sum 2 -> clamp 1 -> 1
    assert float(losses.merge_masks(masks)[0, 0, 0, 0]) == 1.0
    half = jnp.array([-1.0, -0.5]).reshape(1, 2, 1, 1, 1)
    assert float(losses.merge_masks(half)[0, 0, 0, 0]) == pytest.approx(-0.5)


def test_masked_mean_ignores_inactive_samples():
    values = jnp.array([1.0, 100.0, 3.0])
    assert float(losses.masked_mean(values, jnp.array([True, False, True]))) == 2.0
    assert float(losses.masked_mean(values, jnp.zeros(3, bool))) == 0.0
    assert float(losses.masked_mean(values)) == pytest.approx(104 / 3)


def _slots(areas, size=4):
    """Masks whose k-th slot covers `areas[k]` pixels (0 = empty slot) of a size x size image."""
    m = -np.ones((1, len(areas), size, size, 1), np.float32)
    for k, area in enumerate(areas):
        m[0, k].flat[:area] = 1.0
    return jnp.asarray(m)


def test_select_largest_orders_by_area_ties_stable_empty_last():
    masks = _slots([3, 0, 7, 3, 5])
    selected, valid = instances.select_largest(masks, 4)
    areas = np.asarray((selected > 0).sum(axis=(2, 3, 4)))[0]
    np.testing.assert_array_equal(areas, [7, 5, 3, 3])
    np.testing.assert_array_equal(selected[0, 2], masks[0, 0])  # tie keeps slot order
    np.testing.assert_array_equal(valid, [[True] * 4])


def test_select_largest_pads_with_empty_slots():
    selected, valid = instances.select_largest(_slots([2, 0]), 4)
    assert selected.shape[1] == 4
    np.testing.assert_array_equal(valid, [[True, False, False, False]])
    assert float(selected[0, 1:].max()) == -1.0


def test_split_groups_is_group_major_and_drops_the_remainder():
    masks = _slots([6, 5, 4, 3, 2])
    valid = instances.mask_valid(masks)
    groups, group_valid = instances.split_groups(masks, valid, 2)
    assert groups.shape == (2, 1, 2, 4, 4, 1) and group_valid.shape == (2, 1, 2)
    np.testing.assert_array_equal(groups[1, 0, 0], masks[0, 2])
    np.testing.assert_array_equal(instances.merge_groups(groups), masks[:, :4])
    with pytest.raises(ValueError, match="ins_per=3"):
        instances.split_groups(masks[:, :2], valid[:, :2], 3)


def test_batchwide_valid_is_the_reference_rule():
    masks = jnp.concatenate([_slots([1, 0, 0]), _slots([0, 0, 2])], axis=0)
    np.testing.assert_array_equal(instances.mask_valid(masks), [[1, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(instances.batchwide_valid(masks), [[1, 0, 1], [1, 0, 1]])
