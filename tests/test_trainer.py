"""The training loop: exact resume after SIGTERM, damaged checkpoints (replaced, checksummed), logs on
resume, config mismatch, NaN stop, bad data mid-run, domains without instances, up-front checks, CLI."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import struct
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import TINY_RUN
from tensorboardX.proto.event_pb2 import Event, SessionLog

from instagan_jax import cli, data, loop
from instagan_jax.checkpoint import (
    Checkpoints,
    ConfigMismatchError,
    checkpoint_directory,
    replicated_abstract,
)
from instagan_jax.methods import config_from_dict
from instagan_jax.methods.instagan.step import init_state

CONFIG = config_from_dict(TINY_RUN)


def _final_state(workdir: Path, config=CONFIG):
    spec = loop.step_spec(config, 1.0)
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
    straight = loop.train(CONFIG, root / "straight", steps=6, progress=False)

    def interrupt(step: int) -> None:
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    first = loop.train(CONFIG, root / "resumed", steps=6, progress=False, on_step=interrupt)
    second = loop.train(CONFIG, root / "resumed", steps=6, progress=False)
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


def test_a_time_budget_stops_with_a_checkpoint_and_training_again_goes_on(runs, tmp_path, monkeypatch, capsys):
    class Clock:  # 25 s pass at every look at the clock: a 1-minute budget allows 2 iterations
        now = 0.0

        @classmethod
        def monotonic(cls):
            cls.now += 25.0
            return cls.now

        perf_counter = staticmethod(loop.time.perf_counter)

    monkeypatch.setattr(loop, "time", Clock)
    summary = loop.train(CONFIG, tmp_path / "run", steps=6, progress=False, minutes=1.0)
    assert summary.out_of_time and not summary.interrupted and summary.step == 2
    assert summary.checkpoint == tmp_path / "run" / "checkpoints" / "2"
    assert "1 minute(s) passed: stopped after iteration 2 of 6; checkpoint saved" in capsys.readouterr().out
    monkeypatch.undo()
    again = loop.train(CONFIG, tmp_path / "run", steps=6, progress=False)
    assert again.start_step == 2 and again.step == 6 and not again.out_of_time
    _assert_same_state(_final_state(tmp_path / "run")[1], _final_state(runs[0] / "straight")[1])
    with pytest.raises(ValueError, match="minutes must be > 0, got 0"):
        loop.train(CONFIG, tmp_path / "other", steps=6, minutes=0)


def test_workdir_holds_metrics_samples_and_config(runs):
    root = runs[0]
    lines = [json.loads(line) for line in (root / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(line["G"]) and line["train/lr"] > 0 for line in lines)
    assert sorted(p.name for p in (root / "straight" / "samples").iterdir()) == \
        ["step_0000002.png", "step_0000004.png", "step_0000006.png"]
    assert list((root / "straight" / "tensorboard").iterdir())
    assert json.loads((root / "straight" / "config.json").read_text())["name"] == "tiny"


def _damage(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")


def _copy_with_damaged_step_6(runs, tmp_path: Path, part: str = "state") -> Path:
    workdir = tmp_path / "copy"
    shutil.copytree(runs[0] / "straight", workdir)
    _damage(workdir / "checkpoints" / "6" / part)
    return workdir


def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(runs, tmp_path, caplog):
    workdir = _copy_with_damaged_step_6(runs, tmp_path)
    with caplog.at_level(logging.WARNING):
        step, _, data_state = _final_state(workdir)
    assert step == 4 and data_state["batches_served"] == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "checkpoints/6 is damaged" in warnings[0]
    assert "\n" not in warnings[0] and len(warnings[0]) < 500


def test_flipped_bytes_in_a_checkpoint_are_found_by_its_checksum(runs, tmp_path, caplog):
    _, expected, _ = _final_state(runs[0] / "straight")
    chunks = sorted((runs[0] / "straight" / "checkpoints" / "6" / "state").rglob("ocdbt.process_0/d/*"))
    found_by_digest = 0
    # orbax writes arrays concurrently, so which array sits where in a chunk varies between runs: flip
    # several places, each in its own copy of the run
    places = [(c, tenths) for c in chunks if c.stat().st_size > 16384 for tenths in (1, 5, 9)]
    for chunk, tenths in places:
        workdir = tmp_path / f"{chunk.name}_{tenths}"
        shutil.copytree(runs[0] / "straight", workdir)
        damaged = workdir / chunk.relative_to(runs[0] / "straight")
        content = bytearray(damaged.read_bytes())
        start = len(content) * tenths // 10
        content[start:start + 4096] = bytes(b ^ 0xFF for b in content[start:start + 4096])
        damaged.write_bytes(bytes(content))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            step, state, _ = _final_state(workdir)
        if step == 6:  # the flipped block held no live data (OCDBT files may keep superseded bytes)
            _assert_same_state(state, expected)
        else:
            assert step == 4
            found_by_digest += "SHA-256" in caplog.text
    assert found_by_digest  # not only chunks that fail to decode


def _event_files(workdir: Path) -> list:
    """The events of each TensorBoard file (TFRecord framing: length, crc, data, crc), oldest file first."""
    files = []
    for path in sorted((workdir / "tensorboard").iterdir(), key=lambda p: p.stat().st_mtime_ns):
        raw, events, at = path.read_bytes(), [], 0
        while at < len(raw):
            (length,) = struct.unpack("<Q", raw[at:at + 8])
            events.append(Event.FromString(raw[at + 12:at + 12 + length]))
            at += 16 + length
        files.append(events)
    return files


def test_a_damaged_step_is_replaced_and_logs_are_not_repeated(runs, tmp_path, caplog):
    workdir = _copy_with_damaged_step_6(runs, tmp_path)
    summary = loop.train(CONFIG, workdir, steps=6, progress=False)
    assert summary.start_step == 4 and summary.checkpoint == workdir / "checkpoints" / "6"
    assert (workdir / "damaged_checkpoints" / "6" / "state").is_dir()  # moved aside, not deleted
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        step, state, _ = _final_state(workdir)
    assert step == 6 and "damaged" not in caplog.text
    _assert_same_state(_final_state(runs[0] / "straight")[1], state)
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    resumed_events = _event_files(workdir)[-1]
    assert any(e.step == 5 and e.session_log.status == SessionLog.START for e in resumed_events)  # purges >= 5
    assert min(e.step for e in resumed_events if e.summary.value) == 5


def test_info_falls_back_from_a_damaged_checkpoint_and_creates_nothing(runs, tmp_path, capsys):
    workdir = _copy_with_damaged_step_6(runs, tmp_path, part="")
    assert cli.main(["info", str(workdir)]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 4
    missing = tmp_path / "no_such_run"
    assert cli.main(["info", str(missing)]) == 2
    assert "no checkpoints folder" in capsys.readouterr().err and not missing.exists()


def test_a_fresh_run_moves_earlier_logs_aside(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "G": 7.0}\n')
    (tmp_path / "config.json").write_text('{"name": "earlier"}\n')
    loop.train(CONFIG, tmp_path, steps=1, progress=False)
    assert (tmp_path / "previous_run" / "metrics.jsonl").read_text() == '{"step": 1, "G": 7.0}\n'
    assert json.loads((tmp_path / "previous_run" / "config.json").read_text()) == {"name": "earlier"}
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["G"] != 7.0
    assert json.loads((tmp_path / "config.json").read_text())["name"] == "tiny"


def test_a_different_config_is_an_error_naming_the_keys(runs, tmp_path):
    changed = config_from_dict({**TINY_RUN, "model": {"ngf": 8, "ndf": 4, "n_blocks": 1}})
    with pytest.raises(ConfigMismatchError, match=r"model\.ngf: checkpoint 4, now 8"):
        loop.train(changed, runs[0] / "straight", steps=7, progress=False)


class _Edited:
    """The config's loader with `edit(batch, n)` applied to its n-th batch (1-based) of this call."""

    def __init__(self, edit):
        self.loader, self.edit, self.served = loop.make_loader(CONFIG), edit, 0
        self.batches_per_epoch, self.skips = self.loader.batches_per_epoch, self.loader.skips

    def __next__(self):
        batch = next(self.loader)
        self.served += 1
        self.edit(batch, self.served)
        return batch

    def get_state(self):
        return self.loader.get_state()

    def set_state(self, state):
        self.loader.set_state(state)

    def close(self):
        self.loader.close()


def _nan_at(step: int):
    def edit(batch, n):
        if n == step:
            batch["img_A"][0, 0, 0, 0] = np.nan
    return edit


def test_nan_loss_stops_with_the_step_and_term_and_keeps_the_last_checkpoint(tmp_path):
    loader = _Edited(_nan_at(3))
    with pytest.raises(loop.TrainingError, match=r"iteration 3: loss \w+ is nan"):
        loop.train(CONFIG, tmp_path, steps=6, progress=False, loader=loader)
    assert Checkpoints(tmp_path).steps() == [2]


def test_cli_train_and_info(runs, tmp_path, capsys):
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY_RUN))
    workdir = tmp_path / "cli"
    assert cli.main(["train", "--config", str(config_file), "--workdir", str(workdir), "--steps", "2",
                     "--no-progress", "--set", "log.sample_every=1"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint:" in out and str(workdir / "checkpoints" / "2") in out
    assert re.search(r"2 iteration\(s\) in this run \(\d+\.\d\d it/s after compiling\); now at iteration 2", out)
    assert cli.main(["info", str(workdir)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["step"] == 2 and set(info["param_sum_of_squares"]) == {"G_A", "G_B", "D_A", "D_B"}
    _, state, _ = _final_state(workdir)
    expected = sum(float(np.sum(np.square(np.asarray(x, np.float64)))) for x in jax.tree.leaves(state.params["G_A"]))
    assert info["param_sum_of_squares"]["G_A"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.slow  # ~40 s; float64 steps are also checked by the float64 parity tests
def test_float64_training_from_the_command_line(tmp_path, capsys):
    """model.dtype=float64 trains, checkpoints and resumes in float64; the process stays in float32 mode."""
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY_RUN))
    workdir = tmp_path / "f64"
    args = ["train", "--config", str(config_file), "--workdir", str(workdir), "--no-progress",
            "--set", "model.dtype=float64"]
    assert cli.main([*args, "--steps", "1"]) == 0
    assert cli.main([*args, "--steps", "2"]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert cli.main(["info", str(workdir)]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 2
    config = config_from_dict({**TINY_RUN, "model": {**TINY_RUN["model"], "dtype": "float64"}})
    with jax.enable_x64(True):
        _, state, _ = _final_state(workdir, config)
    floats = [x for x in jax.tree.leaves((state.params, state.opt, state.pools)) if x.dtype.kind == "f"]
    assert floats and {x.dtype for x in floats} == {np.dtype("float64")}
    assert not jax.config.jax_enable_x64


def test_cli_reports_bad_config_keys(tmp_path, capsys):
    assert cli.main(["train", "--workdir", str(tmp_path), "--set", "train.batchsize=4"]) == 2
    assert "train.batchsize" in capsys.readouterr().err


class _BrokenFileAt(_Edited):
    """The config's loader, failing before its `step`-th batch as on an unreadable file."""

    def __init__(self, step: int):
        super().__init__(lambda batch, n: None)
        self.step = step

    def __next__(self):
        if self.served + 1 == self.step:
            raise data.DataError("cannot read image /data/trainA/broken.png")
        return super().__next__()


def test_bad_data_mid_run_saves_a_checkpoint_and_names_the_file(tmp_path):
    with pytest.raises(data.DataError, match=r"broken\.png.*stopped after iteration 3; checkpoint .*3 saved"):
        loop.train(CONFIG, tmp_path, steps=6, progress=False, loader=_BrokenFileAt(4))
    assert Checkpoints(tmp_path).steps() == [2, 3]
    summary = loop.train(CONFIG, tmp_path, steps=4, progress=False)
    assert summary.start_step == 3 and summary.step == 4


def _no_masks(batch, _n):
    for domain in ("A", "B"):
        batch[f"masks_{domain}"][...] = -1.0
        batch[f"valid_{domain}"][...] = False


def test_a_domain_without_instances_warns_in_a_short_run_and_stops_after_an_epoch(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        loop.train(CONFIG, tmp_path, steps=2, progress=False, loader=_Edited(_no_masks))
    assert "domain A and B had no instance mask in 2 batch(es)" in caplog.text
    epoch = int(loop.make_loader(CONFIG).batches_per_epoch)
    with pytest.raises(loop.TrainingError, match=rf"no instance mask in {epoch} batch\(es\).*after one epoch"):
        loop.train(CONFIG, tmp_path, steps=2 + epoch + 1, progress=False, loader=_Edited(_no_masks))


def test_sigterm_before_the_first_iteration_ends_is_exit_status_3(tmp_path, monkeypatch, capsys):
    compiled = loop.compiled_step

    def signalled_while_compiling(method, spec, placement):
        iteration = compiled(method, spec, placement)

        class Compiling:  # the loop compiles the step ahead of its first iteration
            def lower(self, *args):
                os.kill(os.getpid(), signal.SIGTERM)
                return iteration.lower(*args)
        return Compiling()

    monkeypatch.setattr(loop, "compiled_step", signalled_while_compiling)
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY_RUN))
    argv = ["train", "--config", str(config_file), "--workdir", str(tmp_path / "run"), "--no-progress"]
    assert cli.main([*argv, "--steps", "4"]) == cli.INTERRUPTED == 3
    assert "SIGTERM: stopped after iteration 1" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--steps", "-1"], "steps must be >= 0, got -1"),
    (["--set", "log.checkpoint_every=0"], "log.checkpoint_every: expected a value >= 1, got 0"),
    (["--set", "model.ngf=abc"], "model.ngf: expected an integer, got 'abc'"),
    (["--set", "data.options.sise=3"], "data kind 'shapes': data.options.sise (its options: "),
    (["--set", "data.crop_size=[16,16]"], "multiples of 4 and at least 24"),
])
def test_cli_train_refuses_bad_values_before_doing_anything(tmp_path, capsys, args, message):
    workdir = tmp_path / "run"
    assert cli.main(["train", "--workdir", str(workdir), "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (workdir / "checkpoints").exists()


@pytest.mark.parametrize("file, workdir", [("run", "run"), ("run/checkpoints", "run"), ("file", "file/run")])
def test_a_workdir_or_checkpoints_path_that_is_a_file_is_an_error(tmp_path, capsys, file, workdir):
    (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / file).write_text("not a folder")
    assert cli.main(["train", "--workdir", str(tmp_path / workdir), "--no-progress"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert (tmp_path / file).read_text() == "not a folder"


def test_an_unwritable_workdir_is_an_error(tmp_path, capsys):
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o500)
    if os.access(parent, os.W_OK):  # root: take a folder that even root cannot create folders in
        parent = Path("/sys")
        if not parent.is_dir():
            pytest.skip("running as root and no /sys to stand for an unwritable folder")
    assert cli.main(["train", "--workdir", str(parent / "run"), "--no-progress"]) == 2
    assert str(parent) in capsys.readouterr().err


def test_checkpoints_in_another_folder_are_written_resumed_and_read_there(tmp_path, capsys):
    elsewhere = tmp_path / "bucket" / "run"
    config = config_from_dict({**TINY_RUN, "log": {**TINY_RUN.get("log", {}), "checkpoint_dir": str(elsewhere)}})
    workdir = tmp_path / "run"
    loop.train(config, workdir, steps=0, progress=False)  # init and checkpoint 0; nothing compiled
    assert (elsewhere / "0" / "state").is_dir() and not (workdir / "checkpoints").exists()
    loop.train(config, workdir, steps=0, progress=False)
    assert f"resuming from {elsewhere / '0'} (iteration 0)" in capsys.readouterr().out
    assert cli.main(["info", str(workdir)]) == 0  # found through the workdir's config.json
    assert json.loads(capsys.readouterr().out)["checkpoint"] == str(elsewhere / "0")
    expected = (f"the checkpoints of {re.escape(str(workdir))} are in {re.escape(str(elsewhere))} .* points to "
                f"{re.escape(str(workdir / 'checkpoints'))}, which has none")
    with pytest.raises(ValueError, match=expected):
        loop.train(CONFIG, workdir, steps=0, progress=False)  # without the key: would start afresh
    assert not (workdir / "checkpoints").exists()


def test_a_checkpoint_url_is_kept_as_a_url():
    assert str(checkpoint_directory("run", "gs://bucket/runs/shp2gir")) == "gs://bucket/runs/shp2gir"
    assert checkpoint_directory("run", "") == Path("run").resolve() / "checkpoints"


def test_sample_grids_keep_the_methods_row_and_column_order(tmp_path, monkeypatch):
    grids = []
    monkeypatch.setattr(loop, "sample_grid", lambda rows: grids.append(rows) or np.zeros((4, 4, 3), np.uint8))
    image = jax.numpy.zeros((1, 4, 4, 3))
    loop._save_sample(tmp_path, 1, {"B->A": {"real": image, "fake": image, "rec": image}, "A->B": {"real": image}})
    assert [list(row) for row in grids[0].values()] == [["real", "fake", "rec"], ["real"]]
    assert list(grids[0]) == ["B->A", "A->B"]
