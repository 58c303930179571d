"""Sequential inference over mask groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from instagan_jax.methods.instagan.inference import translate
from instagan_jax.methods.instagan.networks import SetGenerator
from instagan_jax.nn.build import apply, create
from instagan_jax.nn.instances import mask_valid

H, W = 16, 12


@pytest.fixture(scope="module")
def generators():
    return create(SetGenerator, TINY, 0), create(SetGenerator, TINY, 1)


def _data(seed, batch, n_valid, k):
    key = jax.random.key(seed)
    img = jnp.tanh(jax.random.normal(key, (batch, H, W, 3)))
    # Distinct areas so that the largest-first order is unambiguous.
    rows = jnp.arange(H)[None, :, None, None]
    sizes = jnp.arange(k, 0, -1)[:, None, None, None] + 2
    masks = jnp.where(rows < sizes, 1.0, -1.0) * jnp.ones((k, H, W, 1))
    keep = jnp.arange(k)[None, :] < jnp.asarray(n_valid)[:, None]
    return img, jnp.where(keep[:, :, None, None, None], masks[None], -1.0)


def test_first_group_equals_a_generator_call(generators):
    g, f = generators
    img, masks = _data(0, 1, [2], 2)
    out = translate(g, f, img, masks, ins_per=2)
    fake_img, fake_masks = apply(g, img, masks, mask_valid(masks))
    np.testing.assert_allclose(out.fake_img, fake_img, atol=1e-5)
    np.testing.assert_allclose(out.fake_masks, fake_masks, atol=1e-5)
    rec_img, rec_masks = apply(f, fake_img, fake_masks, mask_valid(masks))
    np.testing.assert_allclose(out.rec_img, rec_img, atol=1e-5)
    np.testing.assert_allclose(out.rec_masks, rec_masks, atol=1e-5)


def test_second_group_translates_the_translated_image(generators):
    g, f = generators
    img, masks = _data(1, 1, [4], 4)
    out = translate(g, f, img, masks, ins_per=2)
    first_img, first_masks = apply(g, img, masks[:, :2], mask_valid(masks[:, :2]))
    second_img, second_masks = apply(g, first_img, masks[:, 2:], mask_valid(masks[:, 2:]))
    np.testing.assert_allclose(out.fake_img, second_img, atol=1e-5)
    np.testing.assert_allclose(out.fake_masks, jnp.concatenate([first_masks, second_masks], 1), atol=1e-5)


def test_more_instances_than_training_and_per_sample_skips(generators):
    """Six slots at ins_per 2: three groups; a sample with one instance keeps its image after group 1."""
    g, f = generators
    img, masks = _data(2, 2, [5, 1], 6)
    out = translate(g, f, img, masks, ins_per=2)
    assert out.fake_masks.shape == (2, 6, H, W, 1)
    single = translate(g, f, img[1:], masks[1:], ins_per=2)
    np.testing.assert_allclose(out.fake_img[1:], single.fake_img, atol=1e-5)
    first, _ = apply(g, img[1:], masks[1:, :2], mask_valid(masks[1:, :2]))
    np.testing.assert_allclose(single.fake_img, first, atol=1e-5)
    np.testing.assert_array_equal(out.fake_masks[1, 1:], -1.0)  # empty slots stay empty
    assert float(out.fake_masks[0, 4].max()) > -1.0 and float(out.fake_masks[0, 5].max()) == -1.0


def test_zero_instances_leave_the_image_unchanged(generators):
    g, f = generators
    img = _data(3, 1, [0], 2)[0]
    out = translate(g, f, img, -jnp.ones((1, 2, H, W, 1)), ins_per=2)
    np.testing.assert_array_equal(out.fake_img, img)
    np.testing.assert_array_equal(out.fake_union, -1.0)
