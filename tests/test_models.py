"""Set generator and discriminator: set semantics, batching, spectral-norm state, parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY
from flax import nnx

from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
from instagan_jax.nn import layers
from instagan_jax.nn.build import ResnetModel, abstract, apply, create
from instagan_jax.nn.instances import mask_valid
from instagan_jax.nn.modules import UPSAMPLERS

H, W = 32, 24


def _masks(seed, batch, k, n_valid):
    """Random soft masks with `n_valid[b]` non-empty leading slots per sample, the rest -1."""
    m = jnp.tanh(3 * jax.random.normal(jax.random.key(seed), (batch, k, H, W, 1)))
    keep = jnp.arange(k)[None, :] < jnp.asarray(n_valid)[:, None]
    return jnp.where(keep[:, :, None, None, None], m, -1.0)


def _image(seed, batch):
    return jnp.tanh(jax.random.normal(jax.random.key(seed), (batch, H, W, 3)))


@pytest.fixture(scope="module")
def gen():
    return create(SetGenerator, TINY, 0)


@pytest.fixture(scope="module")
def disc():
    return create(SetDiscriminator, TINY, 1)


def _count(module) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(module)))


@pytest.mark.parametrize("config,g_count,d_count", [
    (ResnetModel(), 26_815_108, 9_754_434),
    (ResnetModel(ngf=8, ndf=8, n_blocks=2), 165_716, 158_498),
])
def test_parameter_counts_equal_reference(config, g_count, d_count):
    assert _count(abstract(SetGenerator, config)) == g_count
    assert _count(abstract(SetDiscriminator, config)) == d_count  # SN u, v included


def test_generator_shapes_and_range(gen):
    img, masks = _image(0, 2), _masks(1, 2, 3, [3, 2])
    out_img, out_masks = apply(gen, img, masks, mask_valid(masks))
    assert out_img.shape == img.shape and out_masks.shape == masks.shape
    assert float(jnp.max(jnp.abs(out_img))) <= 1.0


def test_generator_permutation_invariant_and_equivariant(gen):
    img, masks = _image(2, 1), _masks(3, 1, 4, [4])
    out_img, out_masks = apply(gen, img, masks, mask_valid(masks))
    perm = np.array([2, 0, 3, 1])
    p_img, p_masks = apply(gen, img, masks[:, perm], mask_valid(masks[:, perm]))
    np.testing.assert_allclose(p_img, out_img, atol=1e-5)
    np.testing.assert_allclose(p_masks, out_masks[:, perm], atol=1e-5)


def test_generator_invalid_slots_change_nothing(gen):
    img, masks = _image(4, 2), _masks(5, 2, 2, [2, 1])
    out_img, out_masks = apply(gen, img, masks, mask_valid(masks))
    junk = jax.random.normal(jax.random.key(6), (2, 3, H, W, 1))  # content ignored when invalid
    more = jnp.concatenate([masks, junk], axis=1)
    valid = jnp.concatenate([mask_valid(masks), jnp.zeros((2, 3), bool)], axis=1)
    m_img, m_masks = apply(gen, img, more, valid)
    np.testing.assert_allclose(m_img, out_img, atol=1e-5)
    np.testing.assert_allclose(m_masks[:, :2], out_masks, atol=1e-5)
    np.testing.assert_array_equal(m_masks[:, 2:], junk)  # invalid slots pass through unchanged


def test_generator_batch_equals_single_calls(gen):
    img, masks = _image(7, 3), _masks(8, 3, 3, [3, 1, 2])
    valid = mask_valid(masks)
    out_img, out_masks = apply(gen, img, masks, valid)
    for b in range(3):
        s_img, s_masks = apply(gen, img[b:b + 1], masks[b:b + 1], valid[b:b + 1])
        np.testing.assert_allclose(out_img[b:b + 1], s_img, atol=1e-5)
        np.testing.assert_allclose(out_masks[b:b + 1], s_masks, atol=1e-5)


def test_generator_zero_instances_is_the_empty_set(gen):
    """No valid slot: set feature 0, every slot passes through, and the sample is independent of mask content."""
    img = _image(9, 1)
    empty = -jnp.ones((1, 2, H, W, 1))
    out_img, out_masks = apply(gen, img, empty, jnp.zeros((1, 2), bool))
    np.testing.assert_array_equal(out_masks, empty)
    assert bool(jnp.all(jnp.isfinite(out_img)))
    other, _ = apply(gen, img, _masks(10, 1, 2, [2]), jnp.zeros((1, 2), bool))
    np.testing.assert_allclose(other, out_img, atol=1e-6)
    e_img = gen.encoder_img(img)
    expected = gen.decoder_img(jnp.concatenate([e_img, jnp.zeros_like(e_img)], axis=-1))
    np.testing.assert_allclose(out_img, expected, atol=1e-5)


def _sn_layers(disc):
    return {"img": disc.feature_img.conv1, "seg": disc.feature_seg.conv1, "cls": disc.classifier1}


def _advanced(conv, steps):
    """u, v after `steps` power iterations from the conv's current state."""
    u, v = conv.u[...], conv.v[...]
    for _ in range(steps):
        u, v = layers.power_iteration(conv.kernel[...], u, v)
    return u, v


@pytest.mark.parametrize("n_valid", [[1], [3], [2, 3]])
def test_spectral_state_advances_once_per_call_and_once_per_valid_slot(disc, n_valid):
    d = nnx.clone(disc)
    masks = _masks(11, len(n_valid), 4, n_valid)
    used_slots = max(n_valid)
    expected = {"img": _advanced(d.feature_img.conv1, 1), "seg": _advanced(d.feature_seg.conv1, used_slots),
                "cls": _advanced(d.classifier1, 1)}
    apply(d, _image(12, len(n_valid)), masks, mask_valid(masks))
    for name, conv in _sn_layers(d).items():
        np.testing.assert_allclose(conv.u[...], expected[name][0], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(conv.v[...], expected[name][1], atol=1e-6, err_msg=name)


def test_discriminator_slot_k_sees_the_kth_sigma(disc):
    """Instance k is scored with the weight normalised after k+1 power iterations, as in the reference."""
    conv = nnx.clone(disc).feature_seg.conv1
    u1, v1 = _advanced(conv, 1)
    u2, v2 = layers.power_iteration(conv.kernel[...], u1, v1)
    sigmas = np.asarray(conv.sigmas(jnp.array([True, True])))
    np.testing.assert_allclose(sigmas, [layers.spectral_sigma(conv.kernel[...], u1, v1),
                                        layers.spectral_sigma(conv.kernel[...], u2, v2)], rtol=1e-6)
    assert abs(sigmas[0] - sigmas[1]) > 0  # the two instances really see different weights


def test_discriminator_permutation_invariant_when_sigma_is_converged(disc):
    """With converged u, v every slot sees the same sigma, so the score ignores instance order."""
    d = nnx.clone(disc)
    for conv in (d.feature_seg.conv1, d.feature_seg.conv2, d.feature_seg.conv3):
        conv.u[...], conv.v[...] = _advanced(conv, 500)
    img, masks = _image(14, 1), _masks(15, 1, 3, [3])
    a = apply(nnx.clone(d), img, masks, mask_valid(masks))
    b = apply(nnx.clone(d), img, masks[:, ::-1], mask_valid(masks[:, ::-1]))
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_discriminator_batch_equals_single_calls(disc):
    """With instances sorted to the front (as select_largest gives), batch B == B batch-1 calls."""
    img, masks = _image(16, 3), _masks(17, 3, 3, [3, 1, 2])
    valid = mask_valid(masks)
    batched = apply(nnx.clone(disc), img, masks, valid)
    for b in range(3):
        single = apply(nnx.clone(disc), img[b:b + 1], masks[b:b + 1], valid[b:b + 1])
        np.testing.assert_allclose(batched[b:b + 1], single, atol=1e-5)


def test_discriminator_invalid_slots_change_nothing(disc):
    img, masks = _image(18, 2), _masks(19, 2, 2, [2, 1])
    valid = mask_valid(masks)
    base = apply(nnx.clone(disc), img, masks, valid)
    junk = jax.random.normal(jax.random.key(20), (2, 2, H, W, 1))
    more = apply(nnx.clone(disc), img, jnp.concatenate([masks, junk], 1),
                 jnp.concatenate([valid, jnp.zeros((2, 2), bool)], 1))
    np.testing.assert_allclose(more, base, atol=1e-5)


def test_discriminator_output_shape(disc):
    img, masks = _image(21, 2), _masks(22, 2, 2, [1, 2])
    assert apply(nnx.clone(disc), img, masks, mask_valid(masks)).shape == (2, H // 8 - 2, W // 8 - 2, 1)


def test_float64_models_and_train_state_hold_float64():
    """model.dtype float64: every parameter, spectral vector, pool and translated output in float64."""
    from instagan_jax.methods.instagan import step as training
    from instagan_jax.methods.instagan.config import InstaganTrain
    from instagan_jax.nn.build import x64_scope

    config = ResnetModel(ngf=4, ndf=4, n_blocks=1, dtype="float64")
    with x64_scope("float64"):
        state = training.init_state(training.StepSpec(config, 24, 24, train=InstaganTrain(ins_max=2, ins_per=1, pool_size=2)))
        floats = [x for x in jax.tree.leaves((state.params, state.spectral, state.pools))
                  if jnp.issubdtype(x.dtype, jnp.floating)]
        assert floats and all(x.dtype == jnp.float64 for x in floats)
        gen = create(SetGenerator, config)
        img, masks = jnp.zeros((1, 16, 16, 3)), -jnp.ones((1, 2, 16, 16, 1))
        out_img, _ = apply(gen, img, masks, jnp.array([[True, False]]))
        assert out_img.dtype == jnp.float64


def test_float64_needs_x64_and_unknown_dtypes_are_named():
    with pytest.raises(ValueError, match="64-bit mode"):
        create(SetGenerator, ResnetModel(ngf=4, ndf=4, n_blocks=1, dtype="float64"))
    with pytest.raises(ValueError, match="'bfloat8'"):
        ResnetModel(dtype="bfloat8")


def test_the_generator_cannot_see_the_images_mean_colour(gen):
    """Instance norm right after the first conv (the reference's layout) removes each channel's mean and
    scale, so the output does not change when the input image gets a global a * x + c (scalar a > 0, one c
    per colour channel): a generator can only guess a background's absolute colour from its training data
    (docs/RESULTS.md, why the learnable tasks have one background colour)."""
    img, masks = _image(0, 2), _masks(1, 2, 3, [2, 1])
    shifted = 0.6 * img + jnp.array([0.2, -0.25, 0.1])
    (out, out_masks), (out2, out_masks2) = (apply(gen, x, masks, mask_valid(masks)) for x in (img, shifted))
    np.testing.assert_allclose(out2, out, atol=2e-4)
    np.testing.assert_allclose(out_masks2, out_masks, atol=2e-4)
    per_channel = img * jnp.array([1.0, 0.5, 0.8])  # not one scale: the colours mix in the first conv
    assert float(jnp.abs(apply(gen, per_channel, masks, mask_valid(masks))[0] - out).max()) > 1e-2


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_a_constant_map_stays_constant_only_through_the_resize_upsampling(upsample):
    """`model.upsample`: a stride-2 transposed conv gives the output pixels of each parity a different
    subset of its taps, so a constant input comes out as a period-2 pattern (two of them: period 4, the
    grid seen in ragged translated masks, docs/RESULTS.md); nearest 2x then a reflection-padded conv sees
    all nine taps everywhere and keeps a constant map constant."""
    layer = UPSAMPLERS[upsample](3, 2, rngs=nnx.Rngs(0))
    out = np.asarray(layer(jnp.full((1, 6, 6, 3), 0.7)))
    assert out.shape == (1, 12, 12, 2)
    spread = float((out.max(axis=(1, 2)) - out.min(axis=(1, 2))).max())
    if upsample == "resize":
        assert spread < 1e-6
    else:
        assert spread > 1e-3


def test_the_resize_upsampling_has_the_transposed_convs_parameter_count():
    counts = {u: _count(abstract(SetGenerator, ResnetModel(ngf=8, ndf=8, n_blocks=2, upsample=u)))
              for u in UPSAMPLERS}
    assert counts == {"transpose": 165_716, "resize": 165_716}
    with pytest.raises(ValueError, match="model.upsample.*'bilinear'"):
        ResnetModel(upsample="bilinear")
