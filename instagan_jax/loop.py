"""The training loop behind `instagan train`: data, device mesh, jitted iterations, checkpoints, logs.

    from instagan_jax.methods import load_config
    from instagan_jax.loop import train
    summary = train(load_config("default"), "runs/demo", steps=300)

A workdir holds `config.json`, `checkpoints/<step>/`, `metrics.jsonl`, `tensorboard/` and
`samples/step_<N>.png`. Running again on a workdir with checkpoints resumes from the newest
good one (the logs after it are dropped); without checkpoints, an earlier run's logs are moved to
`previous_run/` and the networks start fresh or from another run's checkpoint (`init_from`). The
config, `steps` and the workdir are checked before the data is opened.
SIGTERM or SIGINT (Ctrl-C) saves a checkpoint and stops cleanly (`TrainSummary.interrupted`), so
does a bad data file (then its DataError is raised); a NaN or inf loss, or a domain without any
instance for a whole epoch, stops with a TrainingError, keeping the last good checkpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import json
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from instagan_jax import data, methods, optim
from instagan_jax.checkpoint import (
    Checkpoints,
    check_checkpoint_location,
    free_path,
    replicated_abstract,
    saved_steps,
)
from instagan_jax.cluster import cluster_settings
from instagan_jax.config import Config, differences, validate
from instagan_jax.data.sources import open_data
from instagan_jax.nn.build import x64_scope
from instagan_jax.trained import locate, location, restore_state
from instagan_jax.visuals import (
    check_writable_location,
    sample_grid,
    save_png,
    write_text,
)

log = logging.getLogger(__name__)
# The arrays of a loader batch that each kind of method data trains on (methods.DATA_KINDS).
BATCH_KEYS = {
    "sets": tuple(f"{kind}_{d}" for d in ("A", "B") for kind in ("img", "masks", "valid")),
    "images": ("img_A", "img_B"),
    "paired": ("img_A", "img_B"),
    "attributes": ("img", "labels"),
}
# Train-state fields that `init_from` starts afresh; every other field holds the networks.
TRAINING_FIELDS = ("step", "opt", "pools", "rng")
PROGRESS_LOSSES = ("G", "D", "D_A", "D_B")  # shown beside the progress bar when a method reports them


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a NaN loss); the last good checkpoint is kept."""


@dataclasses.dataclass
class TrainSummary:
    """What a call to `train` did."""

    workdir: Path
    start_step: int
    step: int
    interrupted: bool
    checkpoint: Path | None
    sample: Path | None
    iterations_per_second: float  # after the first (compiling) iteration of this call
    out_of_time: bool = False  # stopped by the `minutes` budget before `steps` (checkpoint saved)


class Placement(NamedTuple):
    """The device mesh and the two ways arrays lie on it, declared once per run."""

    mesh: jax.sharding.Mesh
    replicated: NamedSharding  # the train state
    sharded: NamedSharding  # batches: split over 'data'


def make_placement() -> Placement:
    """A 1-D mesh over all devices (all hosts), axis 'data': state replicated, batch split."""
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    return Placement(mesh, NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data")))


@functools.lru_cache(maxsize=8)
def compiled_step(method: methods.Method, spec: Any, placement: Placement) -> Callable:
    """The method's train step, jitted: state replicated, batch sharded; visuals of sample 0 only."""

    def step(state, batch):
        state, metrics, visuals = method.train_step(spec, state, batch)
        return state, metrics, jax.tree.map(lambda x: x[:1], visuals)

    return jax.jit(step, in_shardings=(placement.replicated, placement.sharded),
                   out_shardings=placement.replicated, donate_argnums=0)


def release_compile_memory() -> None:
    """After compiling the step: return the heap memory XLA's compiler freed to the OS.

    glibc keeps it in its per-thread arenas otherwise (`malloc_trim` returns it; a no-op off glibc):
    ~0.7 GiB of resident memory at the reference's model size (docs/BENCHMARKS.md).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def step_spec(config: Config, iters_per_epoch: float) -> Any:
    """The static description of an iteration for a config, by its method."""
    return methods.get(config.method).make_spec(config, iters_per_epoch)


def make_loader(config: Config) -> data.PairLoader:
    """This process's shard of the config's data, batch = global batch / number of processes: unpaired
    A and B (with masks only for a method that uses them), aligned pairs for a paired method, or labelled
    images for an attribute method."""
    d, t = config.data, config.train
    if t.batch_size % jax.process_count():
        raise ValueError(f"train.batch_size {t.batch_size} is not divisible by {jax.process_count()} processes")
    kind = methods.get(config.method).data
    ins_max = t.ins_max if kind == "sets" else 0
    transform = data.TransformConfig(load_size=d.load_size, crop_size=d.crop_size, flip=d.flip, ins_max=ins_max)
    options = dict(batch_size=t.batch_size // jax.process_count(), transform=transform, seed=t.seed,
                   num_threads=d.num_threads, num_workers=d.num_workers, skip_bad=d.skip_bad,
                   shard_index=jax.process_index(), shard_count=jax.process_count())
    sources = open_data(d, kind)
    listed = sources if isinstance(sources, tuple) else (sources,)
    data.check_crop_fits(transform, listed)
    if kind == "sets":
        data.check_has_masks(listed)
    methods.get(config.method).check_data(config, sources)
    if kind == "paired":
        return data.PairedLoader(sources, **options)
    if kind == "attributes":
        return data.AttributeLoader(sources, **options)
    return data.PairLoader(*sources, **options)


def to_global(batch: dict[str, np.ndarray], keys: tuple[str, ...], sharding: NamedSharding) -> dict[str, jax.Array]:
    """This process's part of the batch (its arrays `keys`) -> global arrays sharded over 'data'."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(batch[k])) for k in keys}


def check_finite(metrics: dict[str, np.ndarray], step: int) -> None:
    """Raise TrainingError naming the step, loss term (and mask group, for per-group terms) of a NaN or inf loss."""
    for name, values in metrics.items():
        if name.startswith("ran_"):
            continue
        values = np.atleast_1d(values)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            where = f" (mask group {bad[0]})" if values.size > 1 else ""
            raise TrainingError(f"iteration {step}: loss {name} is {values[bad[0]]}{where}")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[dict[str, str | None]]:
    """While inside, SIGTERM and SIGINT set `flag['signal']` instead of killing the process; a second
    Ctrl-C raises KeyboardInterrupt at once (no checkpoint)."""
    flag: dict[str, str | None] = {"signal": None}

    def handler(signum, _frame):
        if flag["signal"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["signal"] = signal.Signals(signum).name
        again = " (Ctrl-C again: stop now)" if signum == signal.SIGINT else ""
        print(f"\n{flag['signal']}: finishing this iteration, then saving a checkpoint{again}")

    previous = {}
    with contextlib.suppress(ValueError):  # not the main thread: leave the handlers alone
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


LOG_NAMES = ("config.json", "metrics.jsonl", "tensorboard", "samples")


def set_aside_old_logs(workdir: Path) -> Path | None:
    """Move the logs of an earlier run (LOG_NAMES) into `workdir/previous_run[.n]/`; return it, or None."""
    old = [workdir / name for name in LOG_NAMES if (workdir / name).exists()]
    if not old:
        return None
    aside = free_path(workdir / "previous_run")
    aside.mkdir()
    for path in old:
        path.rename(aside / path.name)
    return aside


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only the lines of a metrics.jsonl file up to iteration `step` (and no half-written line)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError, TypeError, KeyError):
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    tmp.replace(path)


class _Logs:
    """Metrics as JSON lines and TensorBoard scalars (written by process 0 only).

    Resuming at iteration `start` drops the logged iterations after it (TensorBoard's purge_step);
    a fresh run (`resumed` false) first moves an earlier run's logs aside.
    """

    def __init__(self, workdir: Path, start: int, resumed: bool):
        self.enabled = jax.process_index() == 0
        self.jsonl = workdir / "metrics.jsonl"
        self.writer = None
        if self.enabled:
            from tensorboardX import SummaryWriter

            if resumed:
                truncate_metrics(self.jsonl, start)
            else:
                aside = set_aside_old_logs(workdir)
                if aside is not None:
                    print(f"no checkpoint in {workdir}: starting afresh, earlier logs moved to {aside}")
            self.writer = SummaryWriter(str(workdir / "tensorboard"), purge_step=start + 1 if resumed else None)

    def write(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.jsonl.open("a") as f:
            f.write(json.dumps({"step": step, **scalars}) + "\n")
        for name, value in scalars.items():
            self.writer.add_scalar(name if "/" in name else f"loss/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class InstanceCount:
    """Counts the valid instance masks of each domain in this call's batches: InstaGAN learns nothing
    from a domain without any (every loss term of its direction is 0)."""

    def __init__(self, batches_per_epoch: float):
        self.batches_per_epoch, self.batches, self.seen = batches_per_epoch, 0, {"A": 0, "B": 0}

    def add(self, batch: dict[str, np.ndarray]) -> None:
        self.batches += 1
        for domain in self.seen:
            self.seen[domain] += int(np.sum(batch[f"valid_{domain}"]))

    def _message(self) -> str | None:
        empty = [d for d, n in self.seen.items() if n == 0]
        if not empty or not self.batches:
            return None
        return (f"domain {' and '.join(empty)} had no instance mask in {self.batches} batch(es): nothing is "
                "learned from it (check the masks of the data, docs/DATA.md)")

    def check(self) -> None:
        """TrainingError once a whole epoch of batches has shown a domain no instance."""
        message = self._message()
        if message and self.batches >= self.batches_per_epoch:
            raise TrainingError(f"{message}; stopping after one epoch")

    def warn_if_empty(self) -> None:
        """One warning if a run shorter than an epoch saw a domain without instances."""
        message = self._message()
        if message:
            log.warning("%s", message)


def check_workdir(workdir: Path) -> None:
    """ValueError if the workdir or its checkpoints folder is a file, or the workdir cannot be written."""
    for path in (workdir, workdir / "checkpoints"):
        if path.exists() and not path.is_dir():
            raise ValueError(f"{path} is a file, not a folder: choose another --workdir")
    check_writable_location(workdir, "workdir")


def _total_steps(config: Config, steps: int | None, iters_per_epoch: float) -> int:
    if steps is not None:
        return steps
    if config.train.steps is not None:
        return config.train.steps
    return math.ceil((config.train.niter + config.train.niter_decay) * iters_per_epoch)


def initial_networks(init_from: str | Path, config: Config) -> tuple[Any, Path]:
    """(train state, checkpoint folder) of a run's newest checkpoint or of one checkpoint folder, for
    `train(init_from=...)`, on this process's first device; ValueError naming the method or model
    keys in which its config differs."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    source, _, state, folder = restore_state(**location(init_from), sharding=device)
    keys = ("method", "model")
    diff = differences({k: source.to_dict()[k] for k in keys}, {k: config.to_dict()[k] for k in keys})
    if diff:
        lines = "; ".join(f"{key}: {a!r} there, {b!r} here" for key, (a, b) in diff.items())
        raise ValueError(f"--init-from {folder}: its model differs from this run's config ({lines}); "
                         "use the same method and model section")
    return state, folder


def with_networks(state: Any, source: Any) -> Any:
    """`state` with the networks of `source` (every field but TRAINING_FIELDS)."""
    return state.replace(**{f.name: getattr(source, f.name) for f in dataclasses.fields(state)
                            if f.name not in TRAINING_FIELDS})


def _restore_or_init(checkpoints: Checkpoints, method: methods.Method, spec: Any, config: Config,
                     placement: Placement, loader: data.PairLoader, initial: Any = None) -> tuple[Any, int]:
    """The newest checkpoint's state (and loader position); else a state at iteration 0 around the
    networks of the `initial` state (Adam, pools fresh), or a fresh one."""

    def fresh():
        return method.init_state(spec, config.train.seed)

    abstract = replicated_abstract(jax.eval_shape(fresh), placement.replicated)
    restored = checkpoints.restore_latest(abstract, config.to_dict(), methods.upgrade_saved)
    if restored is None:
        state = fresh() if initial is None else with_networks(fresh(), initial)
        return jax.device_put(state, placement.replicated), 0
    start, state, data_state = restored
    if data_state:  # empty in a checkpoint converted from the reference: the data start from the beginning
        loader.set_state(data_state)
    print(f"resuming from {checkpoints.directory / str(start)} (iteration {start})")
    return state, start


def train(config: Config, workdir: str | Path, *, steps: int | None = None,
          loader: data.PairLoader | None = None, progress: bool = True,
          on_step: Callable[[int], None] | None = None, cluster: dict[str, Any] | None = None,
          init_from: str | Path | None = None, minutes: float | None = None) -> TrainSummary:
    """Train (or resume) until `steps` iterations are done (default: the config's), or until `minutes`
    of wall time have passed since the call (then a checkpoint is saved; calling again goes on).

    `loader` replaces the config's data (tests); `on_step(step)` is called after every iteration.
    With `train.distributed`, `cluster` (default: `cluster.cluster_settings()`, from the environment)
    is passed to `jax.distributed.initialize`. `init_from` (a run's folder or one checkpoint folder,
    same model section) gives a run without checkpoints its starting networks; a run with checkpoints
    resumes and ignores it.
    """
    from tqdm import tqdm

    validate(config)
    if steps is not None and steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if minutes is not None and not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    deadline = None if minutes is None else time.monotonic() + 60.0 * minutes
    method = methods.get(config.method)
    method.make_spec(config, 1.0)  # image size and mask groups checked before the data is opened
    check_workdir(Path(workdir))
    check_checkpoint_location(workdir, config.log.checkpoint_dir)
    if config.train.distributed:
        jax.distributed.initialize(**(cluster_settings() if cluster is None else cluster))
    workdir = Path(workdir)
    placement = make_placement()
    if config.train.batch_size % placement.mesh.size:
        raise ValueError(f"train.batch_size {config.train.batch_size} is not divisible by {placement.mesh.size} devices")
    config_dict = config.to_dict()
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(x64_scope(config.model.dtype))
        stop = cleanup.enter_context(stop_on_signals())
        initial = None
        if init_from is not None and saved_steps(workdir, config.log.checkpoint_dir):
            print(f"{workdir} has checkpoints: resuming, --init-from {init_from} is ignored")
        elif init_from is not None:
            initial, folder = initial_networks(init_from, config)
            print(f"starting from the networks of {folder} (Adam, image pools and iteration count afresh)")
        loader = loader or make_loader(config)
        cleanup.callback(loader.close)
        workdir.mkdir(parents=True, exist_ok=True)  # only once the config and the data have been checked
        spec = method.make_spec(config, loader.batches_per_epoch)
        total = _total_steps(config, steps, loader.batches_per_epoch)
        checkpoints = Checkpoints(workdir, keep=config.log.keep_checkpoints, directory=config.log.checkpoint_dir)
        cleanup.callback(checkpoints.close)
        resumed = bool(checkpoints.steps())
        state, start = _restore_or_init(checkpoints, method, spec, config, placement, loader, initial)
        logs = _Logs(workdir, start, resumed)
        cleanup.callback(logs.close)
        if jax.process_index() == 0:
            _write_json(workdir / "config.json", config_dict)
        if start >= total:
            print(f"nothing to do: the workdir is at iteration {start} of {total} (raise --steps to go on)")
        train_step = compiled_step(method, spec, placement)
        bar = tqdm(total=total, initial=start, desc="train", unit="it", disable=not progress or jax.process_index())
        cleanup.callback(bar.close)
        step, checkpoint, sample, visuals, bad_data = start, None, None, None, None
        instances = InstanceCount(loader.batches_per_epoch) if method.data == "sets" else None
        timer = None  # (time, step) after the first iteration of this call, so compile time is excluded
        out_of_time = False
        while step < total and not stop["signal"]:
            if deadline is not None and time.monotonic() >= deadline:
                out_of_time = True
                break
            try:
                batch = next(loader)
            except data.DataError as err:
                bad_data = err
                break
            if instances is not None:
                instances.add(batch)
            global_batch = to_global(batch, BATCH_KEYS[method.data], placement.sharded)
            if step == start:  # compile ahead, and hand the memory compiling freed back before running
                train_step = train_step.lower(state, global_batch).compile()
                release_compile_memory()
            state, metrics, visuals = train_step(state, global_batch)
            metrics = jax.device_get(metrics)
            step += 1
            timer = timer or (time.perf_counter(), step)
            check_finite(metrics, step)
            if instances is not None:
                instances.check()
            if step % config.log.log_every == 0 or step == total:
                scalars = method.summarize(metrics)
                lr = float(optim.learning_rate(config.train, loader.batches_per_epoch, step - 1))
                logs.write(step, {**scalars, "train/lr": lr, "train/skipped_records": loader.skips.count})
                bar.set_postfix({k: f"{v:.3f}" for k, v in scalars.items() if k in PROGRESS_LOSSES}, refresh=False)
            if step % config.log.sample_every == 0:
                sample = _save_sample(workdir, step, method.visual_rows(visuals))
            if step % config.log.checkpoint_every == 0:
                checkpoint = checkpoints.save(step, state, loader.get_state(), config_dict)
            bar.update(1)
            if on_step is not None:
                on_step(step)
        if step > start or not (checkpoints.steps() or bad_data):  # bad data at once: nothing to resume
            checkpoint = checkpoints.save(step, state, loader.get_state(), config_dict)
        if visuals is not None and (sample is None or not sample.name.endswith(f"{step:07d}.png")):
            sample = _save_sample(workdir, step, method.visual_rows(visuals))
        if bad_data is not None:
            raise data.DataError(f"{bad_data} ({_after_bad_data(step, checkpoint, config.data.skip_bad)})") from bad_data
        if stop["signal"]:
            print(f"\n{stop['signal']}: stopped after iteration {step}; checkpoint saved. "
                  "Run the same command again to resume.")
        if out_of_time:
            print(f"\n{minutes:g} minute(s) passed: stopped after iteration {step} of {total}; checkpoint saved. "
                  "Run again to go on.")
        if instances is not None:
            instances.warn_if_empty()
    rate = (step - timer[1]) / (time.perf_counter() - timer[0]) if timer and step > timer[1] else 0.0
    return TrainSummary(workdir, start, step, stop["signal"] is not None, checkpoint, sample, rate, out_of_time)


def _after_bad_data(step: int, checkpoint: Path | None, skip_bad: bool) -> str:
    """What a stop on bad data left and what to do next."""
    fix = "fix or remove the file" + ("" if skip_bad else ", or set data.skip_bad=true")
    if checkpoint is None:
        return f"stopped before iteration {step + 1}, no checkpoint written: {fix}, then run again"
    return f"stopped after iteration {step}; checkpoint {checkpoint} saved: {fix}, then run again to resume"


def _save_sample(workdir: Path, step: int, rows: dict) -> Path | None:
    if jax.process_index() != 0:
        return None
    # Fetched entry by entry: `jax.device_get` of a dict would sort its keys, and so the grid's columns.
    fetched = {name: {label: jax.device_get(images) for label, images in row.items()} for name, row in rows.items()}
    return save_png(sample_grid(fetched), workdir / "samples" / f"step_{step:07d}.png")


def _write_json(path: Path, values: dict) -> None:
    write_text(path, json.dumps(values, indent=2) + "\n")


def checksums(workdir: str | Path) -> dict[str, Any]:
    """The newest good checkpoint's step (or that of a checkpoint folder RUN/checkpoints/N) and a float64
    sum of squares of each network's parameters.

    Reads only: damaged checkpoints are reported and skipped, as when training resumes.
    """
    where = location(workdir)
    run, _ = locate(**where)
    _, step, state, folder = restore_state(**where)
    sums = {name: float(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in jax.tree.leaves(params)))
            for name, params in state.params.items()}
    return {"workdir": str(run.resolve()), "step": step, "checkpoint": str(folder),
            "param_sum_of_squares": sums}
