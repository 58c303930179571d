"""pix2pix: parity with the reference fixture, its layers, dropout, the training step, paired data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from jax import lax
from PIL import Image

from instagan_jax import data, methods
from instagan_jax.data.errors import DataError
from instagan_jax.data.records import Record
from instagan_jax.methods.pix2pix import reference as pix2pix_reference
from instagan_jax.methods.pix2pix import step as pix2pix
from instagan_jax.methods.pix2pix.config import Pix2pixModel
from instagan_jax.nn import layers
from instagan_jax.nn.build import create
from instagan_jax.nn.modules import BatchNorm
from tests.conftest import SHARED, require_shared

FIXTURE = SHARED / "parity" / "pix2pix_small_f64.npz"
FIXTURE_GUIDANCE = 1e-9  # the fixture JSON's atol / rtol for images, losses and updated values


def test_parity_with_reference_fixture():
    from instagan_jax.parity import run_parity

    checks = run_parity(require_shared(FIXTURE))
    failed = [c for c in checks if not c.passed]
    assert not failed, failed
    worst = {}
    for c in checks:
        worst[c.kind] = max(worst.get(c.kind, 0.0), c.error)
    assert set(worst) == {"exact", "outputs", "losses", "updated"}
    assert worst["exact"] == 0.0
    assert all(error < FIXTURE_GUIDANCE for error in worst.values()), worst
    assert not any(c.informational for c in checks)
    assert sum(c.name.startswith("train/iter1/") for c in checks) >= 14  # losses, 8 state groups, visuals


def _random(seed, shape):
    return np.random.default_rng(seed).normal(size=shape)


def test_k4_transposed_conv_equals_torch():
    x, w, b = _random(0, (2, 5, 3, 4)), _random(1, (4, 6, 4, 4)), _random(2, (6,))  # torch weight (I, O, kh, kw)
    theirs = torch.nn.functional.conv_transpose2d(torch.tensor(x.transpose(0, 3, 1, 2)), torch.tensor(w),
                                                  torch.tensor(b), stride=2, padding=1)
    with jax.enable_x64(True):
        ours = layers.conv_transpose2d_k4s2(jnp.asarray(x), jnp.asarray(w.transpose(2, 3, 0, 1)), jnp.asarray(b))
        assert ours.shape == (2, 10, 6, 6)
        np.testing.assert_allclose(np.asarray(ours), theirs.numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-12)


def test_k4_transposed_conv_gradients_equal_lax():
    x = jnp.asarray(_random(3, (2, 4, 3, 3)), jnp.float32)
    w = jnp.asarray(_random(4, (4, 4, 3, 2)), jnp.float32)
    target = jnp.asarray(_random(5, (2, 8, 6, 2)), jnp.float32)

    def with_lax(x, w):  # PyTorch's tap order is lax's transposed kernel
        return lax.conv_transpose(x, w, (2, 2), [(2, 2), (2, 2)], dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  transpose_kernel=True)

    def loss(f):
        return lambda x, w: jnp.sum(f(x, w.transpose(0, 1, 3, 2) if f is with_lax else w) * target)

    np.testing.assert_allclose(layers.conv_transpose2d_k4s2(x, w), with_lax(x, w.transpose(0, 1, 3, 2)), atol=1e-5)
    ours = jax.grad(loss(layers.conv_transpose2d_k4s2), argnums=(0, 1))(x, w)
    theirs = jax.grad(loss(with_lax), argnums=(0, 1))(x, w)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_batch_norm_running_stats_match_hand_computation():
    x = _random(6, (2, 3, 4, 5)).astype(np.float32)
    bn = BatchNorm(5, rngs=nnx.Rngs(0))
    y = bn(jnp.asarray(x), True)
    flat = x.reshape(-1, 5).astype(np.float64)
    mean, biased, unbiased = flat.mean(0), flat.var(0), flat.var(0, ddof=1)
    np.testing.assert_allclose(bn.mean[...], 0.1 * mean, atol=1e-6)
    np.testing.assert_allclose(bn.var[...], 0.9 + 0.1 * unbiased, atol=1e-6)
    expected = (x - mean) / np.sqrt(biased + 1e-5) * np.asarray(bn.scale[...])
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_dropout_differs_from_none_and_is_deterministic_per_key():
    """A 64x64 U-Net (6 downsamplings: one dropout level) with and without dropout."""
    net = create(pix2pix.NetworkBuilder("G", 6), Pix2pixModel(ngf=2, dropout=True), 0)
    images = jnp.asarray(_random(7, (1, 64, 64, 3)), jnp.float32)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    first, again, other = (pix2pix.translate(net, images, k) for k in (k1, k1, k2))
    np.testing.assert_array_equal(first, again)
    assert float(jnp.max(jnp.abs(first - other))) > 1e-3
    with pytest.raises(ValueError, match="PRNG key"):
        pix2pix.translate(net, images)
    net.dropout = False
    assert float(jnp.max(jnp.abs(first - pix2pix.translate(net, images)))) > 1e-3


TINY_CONFIG = {"method": "pix2pix", "model": {"ngf": 4, "ndf": 4},
               "data": {"kind": "shapes", "options": {"paired": True, "size": 4, "height": 32, "width": 32},
                        "crop_size": [32, 32]},
               "train": {"batch_size": 2, "pool_size": 0}}


@pytest.mark.slow  # ~20 s; test_methods trains the method at batch 2 through the loop
def test_float32_train_step_jitted_at_tiny_size():
    from instagan_jax.methods import config_from_dict

    config = config_from_dict(TINY_CONFIG)
    method = methods.get(config.method)
    spec = method.make_spec(config, 10)
    state = method.init_state(spec, 0)
    batch = {"img_A": jnp.asarray(_random(8, (2, 32, 32, 3)).clip(-1, 1), jnp.float32),
             "img_B": jnp.asarray(_random(9, (2, 32, 32, 3)).clip(-1, 1), jnp.float32)}
    step = jax.jit(method.train_step, static_argnums=0)
    new_state, metrics, visuals = step(spec, state, batch)
    scalars = method.summarize(jax.device_get(metrics))
    assert set(scalars) == {"G_GAN", "G_L1", "D_real", "D_fake", "G"}
    assert all(np.isfinite(v) for v in scalars.values()), scalars
    assert abs(scalars["G"] - scalars["G_GAN"] - scalars["G_L1"]) < 1e-4
    assert visuals["AtoB"]["output"].shape == (2, 32, 32, 3)
    assert int(new_state.step) == 1
    assert {k: int(v) for k, v in new_state.batches_tracked.items()} == {"G": 1, "D": 3}
    moved = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.any(a != b), new_state.batch_stats, state.batch_stats))
    assert all(bool(m) for m in moved)
    # the converters round-trip the state in reference layout
    reference = pix2pix_reference.reference_state(spec, new_state)
    assert reference["D"]["model.3.num_batches_tracked"] == 3
    again = pix2pix_reference.reference_state(spec, pix2pix_reference.import_networks(spec, reference))
    for name in pix2pix.NETWORKS:
        assert list(again[name]) == list(reference[name])
        for key in reference[name]:
            np.testing.assert_array_equal(again[name][key], reference[name][key])


# ---------------------------------------------------------------------------------------------- paired data


class _NoisePairs:
    """Pairs of a random image (A) and its negative (B): equal crops give img_B == -img_A."""

    def __len__(self):
        return 6

    def __getitem__(self, index):
        image = np.random.default_rng(index).integers(0, 256, (40, 44, 3), dtype=np.uint8)
        return Record(image, [], f"a{index}"), Record(255 - image, [], f"b{index}")


def _loader(source, seed=0):
    cfg = data.TransformConfig(load_size=None, crop_size=(32, 32), flip=True, ins_max=0)
    return data.PairedLoader(source, batch_size=2, transform=cfg, seed=seed, num_threads=0)


def test_paired_loader_crops_and_flips_a_and_b_alike():
    batches = [next(loader) for loader in [_loader(_NoisePairs())] for _ in range(3)]
    for batch in batches:
        assert batch["img_A"].shape == batch["img_B"].shape == (2, 32, 32, 3)
        np.testing.assert_allclose(batch["img_B"], -batch["img_A"], atol=1e-6)
    # the crops are random (different windows across the stream)
    assert not np.allclose(batches[0]["img_A"][0], batches[1]["img_A"][0])


def test_paired_loader_resumes_with_the_same_next_batch():
    loader = _loader(_NoisePairs(), seed=3)
    next(loader)
    state = loader.get_state()
    expected = next(loader)
    resumed = _loader(_NoisePairs(), seed=3)
    resumed.set_state(state)
    got = next(resumed)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])


def test_paired_shapes_share_the_scene():
    pairs = data.open_paired("shapes", paired=True, size=3, height=48, width=48, max_instances=3)
    for index in range(3):
        a, b = pairs[index]
        assert len(a.masks) == len(b.masks) >= 1
        inside = np.any(np.array(a.masks + b.masks) > 0, axis=0)
        np.testing.assert_array_equal(a.image[~inside], b.image[~inside])
        assert not np.array_equal(a.image, b.image)
    with pytest.raises(ValueError, match="paired: true"):
        data.open_paired("shapes", size=3)


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_aligned_folder_split_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    left, right = (rng.integers(0, 256, (8, 6, 3), dtype=np.uint8) for _ in range(2))
    _write(tmp_path / "train" / "x.png", np.concatenate([left, right], axis=1))
    pairs = data.open_paired("aligned", root=str(tmp_path))
    assert len(pairs) == 1
    a, b = pairs[0]
    np.testing.assert_array_equal(a.image, left)
    np.testing.assert_array_equal(b.image, right)

    _write(tmp_path / "odd" / "y.png", np.zeros((8, 7, 3), np.uint8))
    with pytest.raises(DataError, match=r"y\.png: width 7 is odd"):
        data.AlignedSource(tmp_path, "odd")[0]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "z.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"z\.png"):
        data.AlignedSource(tmp_path, "bad")[0]


def test_pix2pix_shapes_config_selects_the_method_and_paired_shapes():
    from instagan_jax.methods import load_config

    config = load_config("pix2pix_shapes", ["data.options.size=4"])
    assert methods.get(config.method).data == "paired" and config.model.dropout
    spec = methods.get(config.method).make_spec(config, 4)
    assert (spec.height, spec.width, spec.num_downs) == (64, 64, 6)
    pairs = data.open_paired(config.data.kind, **config.data.options)
    cfg = data.TransformConfig(load_size=config.data.load_size, crop_size=config.data.crop_size,
                               flip=config.data.flip, ins_max=0)
    batch = next(data.PairedLoader(pairs, batch_size=2, transform=cfg, seed=0, num_threads=0))
    assert batch["img_A"].shape == batch["img_B"].shape == (2, 64, 64, 3)
