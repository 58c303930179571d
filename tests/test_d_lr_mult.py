"""`train.d_lr_mult`: the discriminators' learning rate as a multiple of the generators' (default 1, the
reference's)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import TINY_DEFAULT_OVERRIDES

from instagan_jax import loop, methods
from instagan_jax.methods import load_config


def _one_step(config_name: str, overrides: list[str]):
    config = load_config(config_name, [*TINY_DEFAULT_OVERRIDES, "train.batch_size=2", *overrides])
    method = methods.get(config.method)
    loader = loop.make_loader(config)
    batch = {k: np.asarray(v) for k, v in next(loader).items() if k in loop.BATCH_KEYS[method.data]}
    loader.close()
    spec = method.make_spec(config, loader.batches_per_epoch)
    state = method.init_state(spec, 0)
    after, _, _ = jax.jit(lambda s, b: method.train_step(spec, s, b))(state, batch)
    return state.params, after.params


def _changed(before, after) -> bool:
    return any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


@pytest.mark.parametrize("config_name", ["default", pytest.param("cyclegan_shapes", marks=pytest.mark.slow)])
def test_a_zero_multiplier_freezes_the_discriminators_only(config_name):
    before, after = _one_step(config_name, ["train.d_lr_mult=0"])
    assert set(before) == {"G_A", "G_B", "D_A", "D_B"}
    for name in before:
        assert _changed(before[name], after[name]) == name.startswith("G"), name
    with pytest.raises(ValueError, match="train.d_lr_mult"):
        load_config(config_name, ["train.d_lr_mult=-1"])
