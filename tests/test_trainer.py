"""The training loop: exact resume after SIGTERM, damaged checkpoints, config mismatch, NaN stop, CLI."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
from pathlib import Path

import jax
import numpy as np
import pytest

from instagan_jax import cli, trainer
from instagan_jax.checkpoint import (
    Checkpoints,
    ConfigMismatchError,
    replicated_abstract,
)
from instagan_jax.config import config_from_dict
from instagan_jax.training import init_state

TINY_RUN = {
    "name": "tiny",
    "model": {"ngf": 4, "ndf": 4, "n_blocks": 1},
    "data": {"kind": "shapes", "options": {"size": 20, "height": 36, "width": 36, "max_instances": 3},
             "crop_size": [32, 32], "num_threads": 1},
    "train": {"batch_size": 2, "ins_max": 2, "ins_per": 1, "pool_size": 2, "niter": 1, "niter_decay": 2,
              "unroll_groups": False},
    "log": {"log_every": 1, "sample_every": 2, "checkpoint_every": 2, "keep_checkpoints": 5},
}
CONFIG = config_from_dict(TINY_RUN)


def _final_state(workdir: Path, config=CONFIG):
    spec = trainer.step_spec(config, 1.0)
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = replicated_abstract(jax.eval_shape(lambda: init_state(spec)), device)
    checkpoints = Checkpoints(workdir)
    try:
        return checkpoints.restore_latest(abstract)
    finally:
        checkpoints.close()


def _assert_same_state(a, b) -> None:
    for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=jax.tree_util.keystr(path))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Six iterations straight, and 3 + SIGTERM + resume to 6, in two workdirs."""
    root = tmp_path_factory.mktemp("runs")
    straight = trainer.train(CONFIG, root / "straight", steps=6, progress=False)

    def interrupt(step: int) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    first = trainer.train(CONFIG, root / "resumed", steps=6, progress=False, on_step=interrupt)
    second = trainer.train(CONFIG, root / "resumed", steps=6, progress=False)
    return root, straight, first, second


def test_sigterm_saves_and_resume_gives_identical_state(runs):
    root, straight, first, second = runs
    assert straight.step == 6 and not straight.interrupted
    assert first.interrupted and first.step == 3 and first.checkpoint == root / "resumed" / "checkpoints" / "3"
    assert second.start_step == 3 and second.step == 6
    step_a, state_a, data_a = _final_state(root / "straight")
    step_b, state_b, data_b = _final_state(root / "resumed")
    assert step_a == step_b == 6 and data_a == data_b
    _assert_same_state(state_a, state_b)  # parameters, Adam states, u/v, pools, RNG: bit for bit


def test_workdir_holds_metrics_samples_and_config(runs):
    root = runs[0]
    lines = [json.loads(line) for line in (root / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(line["G"]) and line["train/lr"] > 0 for line in lines)
    assert sorted(p.name for p in (root / "straight" / "samples").iterdir()) == \
        ["step_0000002.png", "step_0000004.png", "step_0000006.png"]
    assert list((root / "straight" / "tensorboard").iterdir())
    assert json.loads((root / "straight" / "config.json").read_text())["name"] == "tiny"


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(runs, tmp_path, caplog):
    workdir = tmp_path / "copy"
    shutil.copytree(runs[0] / "straight", workdir)
    state_dir = workdir / "checkpoints" / "6" / "state"
    for f in state_dir.rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        step, _, data = _final_state(workdir)
    assert step == 4 and data["batches_served"] == 4
    assert "checkpoints/6 cannot be read" in caplog.text


def test_a_different_config_is_an_error_naming_the_keys(runs, tmp_path):
    changed = config_from_dict({**TINY_RUN, "model": {"ngf": 8, "ndf": 4, "n_blocks": 1}})
    with pytest.raises(ConfigMismatchError, match=r"model\.ngf: checkpoint 4, now 8"):
        trainer.train(changed, runs[0] / "straight", steps=7, progress=False)


class _NanAt:
    """A loader whose `step`-th batch has a NaN pixel."""

    def __init__(self, loader, step: int):
        self.loader, self.step, self.served = loader, step, 0
        self.batches_per_epoch, self.skips = loader.batches_per_epoch, loader.skips

    def __next__(self):
        batch = next(self.loader)
        self.served += 1
        if self.served == self.step:
            batch["img_A"][0, 0, 0, 0] = np.nan
        return batch

    def get_state(self):
        return self.loader.get_state()

    def close(self):
        self.loader.close()


def test_nan_loss_stops_with_the_step_and_term_and_keeps_the_last_checkpoint(tmp_path):
    loader = _NanAt(trainer.make_loader(CONFIG), step=3)
    with pytest.raises(trainer.TrainingError, match=r"iteration 3: loss \w+ is nan"):
        trainer.train(CONFIG, tmp_path, steps=6, progress=False, loader=loader)
    assert Checkpoints(tmp_path).steps() == [2]


def test_cli_train_and_info(runs, tmp_path, capsys):
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY_RUN))
    workdir = tmp_path / "cli"
    assert cli.main(["train", "--config", str(config_file), "--workdir", str(workdir), "--steps", "2",
                     "--no-progress", "--set", "log.sample_every=1"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint:" in out and str(workdir / "checkpoints" / "2") in out
    assert cli.main(["info", str(workdir)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["step"] == 2 and set(info["param_sum_of_squares"]) == {"G_A", "G_B", "D_A", "D_B"}
    _, state, _ = _final_state(workdir)
    expected = sum(float(np.sum(np.square(np.asarray(x, np.float64)))) for x in jax.tree.leaves(state.params["G_A"]))
    assert info["param_sum_of_squares"]["G_A"] == pytest.approx(expected, rel=1e-12)


def test_cli_reports_bad_config_keys(tmp_path, capsys):
    assert cli.main(["train", "--workdir", str(tmp_path), "--set", "train.batchsize=4"]) == 2
    assert "train.batchsize" in capsys.readouterr().err
