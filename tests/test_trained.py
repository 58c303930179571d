"""Loading a trained run's networks: newest checkpoint or a named one, clear errors otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from instagan_jax import trained
from instagan_jax.methods.instagan.inference import translate


def test_load_newest_and_named_checkpoint(tiny_run):
    newest = trained.load_trained(workdir=tiny_run)
    assert newest.step == 3 and newest.checkpoint == (tiny_run / "checkpoints" / "3").resolve()
    older = trained.load_trained(checkpoint=tiny_run / "checkpoints" / "2")
    assert older.step == 2 and older.config == newest.config
    changed = [not np.array_equal(a, b) for a, b in zip(
        np.asarray(newest.networks["G_A"].encoder_img.stem.kernel[...]).ravel()[:1],
        np.asarray(older.networks["G_A"].encoder_img.stem.kernel[...]).ravel()[:1])]
    assert changed == [True]  # one more Adam step moved the weights
    forward, backward = newest.generators("BtoA")
    assert forward is newest.networks["G_B"] and backward is newest.networks["G_A"]
    img = np.zeros((1, 32, 32, 3), np.float32)
    masks = -np.ones((1, 2, 32, 32, 1), np.float32)
    masks[0, 0, 4:12, 4:12] = 1.0
    out = translate(forward, backward, img, masks, ins_per=1)
    assert out.fake_img.shape == (1, 32, 32, 3) and np.all(np.isfinite(out.fake_img))


@pytest.mark.parametrize("kwargs, message", [
    ({}, "give either a workdir"),
    ({"workdir": "a", "checkpoint": "b"}, "give either a workdir"),
    ({"checkpoint": "."}, "is not a checkpoint folder"),
])
def test_bad_locations_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        trained.locate(**kwargs)


def test_missing_run_and_step(tiny_run, tmp_path, caplog):
    with pytest.raises(FileNotFoundError, match="no checkpoints folder"):
        trained.load_trained(workdir=tmp_path)
    (tmp_path / "checkpoints" / "7").mkdir(parents=True)
    with pytest.raises(ValueError, match="checkpoints/7 is damaged") as raised:
        trained.load_trained(checkpoint=tmp_path / "checkpoints" / "7")
    assert "0x" not in str(raised.value) and "bound method" not in str(raised.value)
    assert not [r for r in caplog.records if "trying the previous one" in r.getMessage()]  # a named step: no fallback
    with pytest.raises(ValueError, match="direction must be"):
        trained.load_trained(workdir=tiny_run).generators("AB")
