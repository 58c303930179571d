"""The packed instance layout (`model.instance_layout=packed`): the same numbers as the padded one.

In float64 the packed and padded forms agree to rounding: the generator's outputs and parameter
gradients, and whole multi-group training iterations at batch 3 with 0 to 4 instances per sample.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from instagan_jax.methods import load_config
from instagan_jax.methods.instagan import step as training
from instagan_jax.methods.instagan.config import InstaganModel, InstaganTrain
from instagan_jax.methods.instagan.networks import SetGenerator
from instagan_jax.nn import instances
from instagan_jax.nn.build import apply, create, x64_scope

SIZE = 32
PADDED = InstaganModel(ngf=4, ndf=4, n_blocks=1, dtype="float64")
PACKED = dataclasses.replace(PADDED, instance_layout="packed", pack_fraction=0.5)
# (B=3, K=4) validity patterns: fits the bucket of 6 (3 valid), exactly full (6), overflows (7: padded
# fallback), empty (0)
PATTERNS = {
    "fits": [[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]],
    "full": [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]],
    "overflows": [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]],
    "empty": [[0, 0, 0, 0]] * 3,
}
TOL = 1e-12


def _inputs(pattern: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    valid = jnp.asarray(np.array(PATTERNS[pattern], bool))
    img = jnp.asarray(rng.uniform(-1, 1, (3, SIZE, SIZE, 3)))
    masks = jnp.asarray(rng.uniform(-1, 1, (3, 4, SIZE, SIZE, 1)))
    return img, jnp.where(valid[:, :, None, None, None], masks, -1.0), valid


def _max_relative(a, b) -> float:
    """The largest leaf-wise max |a - b| / max(max |b|, 1); a leaf whose values are all within 1e-12 of
    each other counts as 0 (e.g. the gradients of biases before an instance norm: zero, up to 1e-14 of
    rounding)."""
    worst = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        difference = float(np.max(np.abs(x - y), initial=0.0))
        if difference > 1e-12:
            worst = max(worst, difference / max(float(np.max(np.abs(y))), 1.0))
    return worst


def test_pack_keeps_valid_slots_in_order_and_marks_unused_entries():
    valid = jnp.array([[True, False, True], [False, True, False]])
    bucket = instances.pack(valid, 4)
    assert bucket.index.tolist() == [0, 2, 4, 6]
    assert bucket.live.tolist() == [True, True, True, False]
    assert bucket.sample.tolist()[:3] == [0, 0, 1]
    entries = jnp.array([1.0, 2.0, 4.0, 100.0])  # the unused entry's value is never summed or written
    assert instances.segment_sum(entries, bucket).tolist() == [3.0, 4.0]
    assert instances.scatter_entries(jnp.zeros(6), entries, bucket).tolist() == [1, 0, 2, 0, 4, 0]
    assert bool(instances.fits(valid, 3)) and not bool(instances.fits(valid, 2))
    assert [instances.bucket_capacity(16, f) for f in (0.5, 0.25, 0.01, 1.0)] == [8, 4, 1, 16]


@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_packed_generator_equals_padded_in_float64(pattern):
    with x64_scope("float64"):
        img, masks, valid = _inputs(pattern)
        padded, packed = create(SetGenerator, PADDED, 0), create(SetGenerator, PACKED, 0)
        assert _max_relative(apply(packed, img, masks, valid), apply(padded, img, masks, valid)) < TOL


def test_packed_mask_branch_itself_equals_padded():
    """The branch the bucket runs (not only the call, which may fall back to padded)."""
    with x64_scope("float64"):
        img, masks, valid = _inputs("full")
        generator = create(SetGenerator, PACKED, 0)
        e_img = generator.encoder_img(img)
        bucket = instances.pack(valid, 6)
        packed = generator._mask_branch_packed(e_img, masks, bucket)
        padded = generator._mask_branch_padded(e_img, masks, valid)
        assert _max_relative(packed, padded) < TOL


@pytest.mark.parametrize("pattern", ["fits", "overflows"])
def test_packed_generator_gradients_equal_padded(pattern):
    with x64_scope("float64"):
        img, masks, valid = _inputs(pattern)

        def grads(model):
            graphdef, params = nnx.split(create(SetGenerator, model, 0))

            def loss(p):
                out_img, out_masks = nnx.merge(graphdef, p)(img, masks, valid)
                return jnp.sum(jnp.sin(3 * out_img)) + jnp.sum(jnp.sin(3 * out_masks))

            return jax.jit(jax.grad(loss))(params)

        assert _max_relative(grads(PACKED), grads(PADDED)) < 1e-10


def _batch(counts: dict[str, list[int]], seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for domain, per_sample in counts.items():
        masks = -np.ones((len(per_sample), 4, SIZE, SIZE, 1))
        for b, n in enumerate(per_sample):
            for k in range(n):
                top, left = rng.integers(0, SIZE // 2, 2)
                masks[b, k, top:top + 4 + 3 * k, left:left + 4 + 3 * k] = 1.0
        out[f"img_{domain}"] = rng.uniform(-1, 1, (len(per_sample), SIZE, SIZE, 3))
        out[f"masks_{domain}"] = masks
        out[f"valid_{domain}"] = np.any(masks > -1, axis=(2, 3, 4))
    return out


def _leaf_differences(a, b) -> dict[str, float]:
    """max |a - b| per leaf, keyed by the leaf's path."""
    return {jax.tree_util.keystr(path): float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)),
                                                   initial=0.0))
            for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True)}


def test_packed_training_iterations_equal_padded_in_float64():
    """Two iterations, two mask groups each, batch 3 with 0-4 instances per sample: the whole state.

    Biases are compared apart: most sit before an instance norm, so their true gradient is zero and
    what they get is rounding (~1e-14), which Adam divides by its own square root plus eps (1e-8): the
    two layouts' rounding then moves them by up to lr * 1e-6 = 2e-10 per update (measured: <= 1.1e-9
    after two iterations, against <= 2.6e-13 on every other leaf). A real difference in a gradient moves
    a parameter by up to lr = 2e-4 per update.
    """
    train = InstaganTrain(ins_max=4, ins_per=2, pool_size=2, batch_size=3)
    batches = [_batch({"A": [4, 1, 0], "B": [2, 3, 1]}, 0), _batch({"A": [1, 0, 2], "B": [4, 4, 4]}, 1)]
    with x64_scope("float64"):
        results = {}
        for name, model in (("padded", PADDED), ("packed", PACKED)):
            spec = training.StepSpec(model, SIZE, SIZE, train=train)
            step = jax.jit(lambda s, b, spec=spec: training.train_step(spec, s, b))
            state = training.init_state(spec, seed=0)
            for batch in batches:
                state, metrics, visuals = step(state, batch)
            results[name] = (state, metrics, visuals)
    differences = _leaf_differences(results["packed"], results["padded"])
    biases = {path: d for path, d in differences.items() if "bias" in path}
    others = {path: d for path, d in differences.items() if "bias" not in path}
    assert len(biases) > 50 and len(others) > 100
    assert max(others.values()) < 1e-11, max(others, key=others.get)
    assert max(biases.values()) < 1e-8, max(biases, key=biases.get)


def test_instance_layout_config_keys_are_checked():
    config = load_config("default", ["model.instance_layout=packed", "model.pack_fraction=0.25"])
    assert config.model.packed_fraction == 0.25
    assert load_config("default", []).model.packed_fraction is None  # padded: the reference's work
    with pytest.raises(ValueError, match="model.instance_layout"):
        InstaganModel(instance_layout="sparse")
    with pytest.raises(ValueError, match="model.pack_fraction"):
        InstaganModel(pack_fraction=0.0)
