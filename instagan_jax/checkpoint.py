"""Checkpoints of a run with orbax: the whole train state, the data iterator's position and the config.

Layout: `<workdir>/checkpoints/<step>/{state,data,config,checksum}`, or `<log.checkpoint_dir>/<step>/...`
when the config names another folder or a URL orbax writes to (`gs://bucket/run`: needs `gcsfs`).
Orbax writes each step to a temporary folder and renames it when complete, so an interrupted save never replaces a good
checkpoint. `checksum` holds a SHA-256 digest of the state's bytes, checked on restore. On restore,
a checkpoint that cannot be read or whose digest differs is damaged: it is reported (one line) and
the next older one is tried. Saving a step found damaged first moves it to
`damaged_checkpoints/` beside the checkpoints folder, so the good save replaces it and nothing is deleted.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from instagan_jax.config import RESUMABLE_CHANGES, differences, with_defaults

log = logging.getLogger(__name__)


class ConfigMismatchError(ValueError):
    """The run's config differs from the checkpoint's in a way that cannot be resumed."""


class DamagedCheckpointError(ValueError):
    """A checkpoint's restored state does not match the digest saved with it."""


def state_digest(state: Any) -> str:
    """SHA-256 of every leaf's path, dtype, shape and bytes (this process's copy of a replicated array)."""
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        array = np.ascontiguousarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
        digest.update(f"{jax.tree_util.keystr(path)} {array.dtype} {array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def checkpoint_directory(workdir: str | Path, configured: str | None = None) -> Path | epath.Path:
    """Where a run's checkpoints live: `configured` (`log.checkpoint_dir`: a folder, or a URL such as
    gs://bucket/run) or, when that is empty, `<workdir>/checkpoints`. None reads `log.checkpoint_dir`
    from the workdir's config.json (a run written before that key, or without the file: the default)."""
    if configured is None:
        saved = Path(workdir) / "config.json"
        configured = json.loads(saved.read_text()).get("log", {}).get("checkpoint_dir", "") if saved.is_file() else ""
    if not configured:
        return Path(workdir).resolve() / "checkpoints"
    if "://" in configured:
        return epath.Path(configured)
    return Path(configured).expanduser().resolve()


class Checkpoints:
    """Save and restore a run's checkpoints in `checkpoint_directory(workdir, directory)`.

    `read_only` opens an existing folder without creating anything (FileNotFoundError if there is
    none); only restore from it.
    """

    def __init__(self, workdir: str | Path, keep: int = 3, read_only: bool = False, directory: str | None = None):
        self.directory = checkpoint_directory(workdir, directory)
        if read_only and not self.directory.is_dir():
            raise FileNotFoundError(f"no checkpoints folder {self.directory} (is {workdir} a training workdir?)")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=not read_only,
                                               enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self.damaged: set[int] = set()  # steps found damaged by restore_latest

    def steps(self) -> list[int]:
        """Saved steps, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict, config: dict) -> Path:
        """Save (blocking) and return the checkpoint's folder; an existing good step is left as it is,
        a damaged one is moved aside and replaced."""
        if step in self.damaged and step in self.manager.all_steps():
            self._move_aside(step)
        if step not in self.manager.all_steps():
            self._check_space(step, state)
            try:
                self.manager.save(step, args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
                    config=ocp.args.JsonSave(config), checksum=ocp.args.JsonSave({"state_sha256": state_digest(state)})))
                self.manager.wait_until_finished()
            except Exception as err:
                if _no_space(err):
                    raise OSError(errno.ENOSPC, f"no space left to write checkpoint {step} in {self.directory} "
                                  f"({_free_mib(self.directory)} MiB free); the earlier checkpoints are kept: free "
                                  "some space and run again to resume") from None
                raise
        self.damaged.discard(step)
        return self.directory / str(step)

    def _check_space(self, step: int, state: Any) -> None:
        """OSError (ENOSPC) in one line, before orbax writes anything, where a local checkpoints folder's
        device has less free space than the state's arrays take plus a margin (orbax would fail midway,
        with a traceback per array)."""
        if "://" in str(self.directory):
            return
        needed = sum(int(getattr(leaf, "nbytes", 0)) for leaf in jax.tree.leaves(state)) + 2**20
        existing = next((p for p in (self.directory, *self.directory.parents) if p.exists()), None)
        if existing is not None and shutil.disk_usage(existing).free < needed:
            raise OSError(errno.ENOSPC, f"no space to write checkpoint {step} in {self.directory}: "
                          f"{_free_mib(self.directory)} MiB free, about {needed / 2**20:.1f} MiB needed; the earlier "
                          "checkpoints are kept: free some space and run again to resume")

    def _move_aside(self, step: int) -> None:
        """Move a damaged step to `damaged_checkpoints/<step>[.n]` beside the checkpoints folder (process 0)."""
        if jax.process_index() == 0:
            aside = free_path(self.directory.parent / "damaged_checkpoints" / str(step))
            aside.parent.mkdir(exist_ok=True)
            (self.directory / str(step)).rename(aside)
            log.warning("moved damaged checkpoint %s to %s; saving a good one in its place",
                        self.directory / str(step), aside)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"instagan checkpoint {step} moved aside")
        self.manager.reload()

    def read_config(self, step: int) -> dict:
        """The config saved with a step."""
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def restore_latest(self, abstract_state: Any, config: dict | None = None, upgrade=with_defaults):
        """(step, state, data_state) of the newest readable checkpoint, or None if there is none.

        `config`, when given, must match the saved one (as `upgrade` brings it to this version's keys)
        except for the fields in `config.RESUMABLE_CHANGES`; otherwise ConfigMismatchError names the
        differing keys.
        """
        failures = []
        for step in reversed(self.steps()):
            try:
                saved_config = self.read_config(step)
            except Exception as err:  # noqa: BLE001 - any read failure means a damaged checkpoint
                failures.append(self.mark_damaged(step, err))
                continue
            if config is not None:
                diff = {k: v for k, v in differences(upgrade(saved_config), config).items()
                        if k not in RESUMABLE_CHANGES}
                if diff:
                    lines = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, a, b in
                                      ((k, *v) for k, v in diff.items()))
                    raise ConfigMismatchError(
                        f"the config differs from the one of checkpoint {self.directory / str(step)}: {lines}. "
                        "Use the original config (or a new --workdir) to continue.")
            try:
                state, data_state = self._restore_verified(step, abstract_state)
            except Exception as err:  # noqa: BLE001
                failures.append(self.mark_damaged(step, err))
                continue
            return step, state, data_state
        if failures:
            raise RuntimeError(f"no readable checkpoint in {self.directory}: " + "; ".join(failures))
        return None

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """(state, data_state) of one step; ValueError naming the folder if it is missing or damaged."""
        if step not in self.steps():
            raise FileNotFoundError(f"no checkpoint {self.directory / str(step)} (saved steps: {self.steps()})")
        try:
            return self._restore_verified(step, abstract_state)
        except Exception as err:  # noqa: BLE001 - any read failure means a damaged checkpoint
            raise ValueError(self.mark_damaged(step, err, falling_back=False)) from err

    def _restore_verified(self, step: int, abstract_state: Any) -> tuple[Any, dict]:
        """(state, data_state) of a step; DamagedCheckpointError if the state's digest differs from the saved
        one (checkpoints written before digests were saved are not checked)."""
        items = {"state": ocp.args.StandardRestore(abstract_state), "data": ocp.args.JsonRestore()}
        checked = (self.directory / str(step) / "checksum").is_dir()
        if checked:
            items["checksum"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        if checked and state_digest(restored["state"]) != restored["checksum"]["state_sha256"]:
            raise DamagedCheckpointError("the state's SHA-256 digest differs from the one saved with it")
        return restored["state"], restored["data"]

    def mark_damaged(self, step: int, err: Exception, falling_back: bool = True) -> str:
        """Record a damaged step and its one-line description; warn once per step where the caller then
        tries the previous one (`falling_back`; otherwise the caller raises the description)."""
        reason = without_reprs((str(err).strip().splitlines() or [""])[0])[:200]
        message = f"checkpoint {self.directory / str(step)} is damaged ({type(err).__name__}: {reason})"
        if falling_back and step not in self.damaged:
            log.warning("%s; trying the previous one", message)
        self.damaged.add(step)
        return message

    def newest_config(self) -> dict:
        """The config of the newest checkpoint whose config is readable (FileNotFoundError if none is)."""
        for step in reversed(self.steps()):
            try:
                return self.read_config(step)
            except Exception as err:  # noqa: BLE001 - a damaged checkpoint: try the previous one
                self.mark_damaged(step, err)
        raise FileNotFoundError(f"no checkpoint with a readable config in {self.directory}")

    def close(self) -> None:
        self.manager.close()


def _no_space(err: BaseException) -> bool:
    """Whether `err` (or an exception it came from) says the device is full (orbax words it as an
    error code or as RESOURCE_EXHAUSTED ... No space left on device)."""
    while err is not None:
        if getattr(err, "errno", None) == errno.ENOSPC or "No space left on device" in str(err):
            return True
        err = err.__cause__ or err.__context__
    return False


def _free_mib(folder: Path) -> str:
    """The free space of `folder`'s device (or of the nearest folder above that exists), in MiB."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    try:
        return f"{shutil.disk_usage(existing).free / 2**20:.1f}"
    except (OSError, TypeError):
        return "?"


def without_reprs(text: str) -> str:
    """`text` with Python object reprs (`<bound method ...>`, `<... at 0x...>`, nested too) cut to `<...>`."""
    while (shorter := _OBJECT_REPR.sub("<...>", text)) != text:
        text = shorter
    return text


_OBJECT_REPR = re.compile(r"<(?!\.\.\.>)[^<>]*(?:bound method|built-in method|function|object| at 0x)[^<>]*>|<[^<>]*<\.\.\.>[^<>]*>")


def saved_steps(workdir: str | Path, directory: str | None = None) -> list[int]:
    """The steps saved in a run's checkpoints folder (`Checkpoints`), oldest first (none without that
    folder); creates nothing."""
    try:
        checkpoints = Checkpoints(workdir, read_only=True, directory=directory)
    except FileNotFoundError:
        return []
    try:
        return checkpoints.steps()
    finally:
        checkpoints.close()


def check_checkpoint_location(workdir: str | Path, configured: str) -> None:
    """ValueError if the workdir's config.json puts its checkpoints elsewhere than `configured`
    (`log.checkpoint_dir`) does, with checkpoints there and none at `configured`: the run would
    start afresh instead of resuming."""
    if not (Path(workdir) / "config.json").is_file():
        return
    recorded, wanted = checkpoint_directory(workdir), checkpoint_directory(workdir, configured)
    if str(recorded) != str(wanted) and saved_steps(workdir) and not saved_steps(workdir, configured):
        raise ValueError(f"the checkpoints of {workdir} are in {recorded} (its config.json), but log.checkpoint_dir "
                         f"now points to {wanted}, which has none: set log.checkpoint_dir as that run did to "
                         "resume, copy the checkpoints there, or choose a new --workdir")


def free_path(path: Path | epath.Path) -> Path | epath.Path:
    """`path`, or else `path.2`, `path.3`, ...: the first that does not exist."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def replicated_abstract(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Shape/dtype structs of a pytree, all placed with `sharding` (the restore target)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
