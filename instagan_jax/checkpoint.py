"""Checkpoints of a run with orbax: the whole train state, the data iterator's position and the config.

Layout: `<workdir>/checkpoints/<step>/{state,data,config}`. Orbax writes each step to a temporary
folder and renames it when complete, so an interrupted save never replaces a good checkpoint. On
restore, a checkpoint that cannot be read is reported and the next older one is tried.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from instagan_jax.config import RESUMABLE_CHANGES, differences

log = logging.getLogger(__name__)


class ConfigMismatchError(ValueError):
    """The run's config differs from the checkpoint's in a way that cannot be resumed."""


class Checkpoints:
    """Save and restore a run's checkpoints under `<workdir>/checkpoints`."""

    def __init__(self, workdir: str | Path, keep: int = 3):
        self.directory = Path(workdir).resolve() / "checkpoints"
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                               enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def steps(self) -> list[int]:
        """Saved steps, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, state: Any, data_state: dict, config: dict) -> Path:
        """Save (blocking) and return the checkpoint's folder; an existing step is left as it is."""
        if step not in self.manager.all_steps():
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state),
                config=ocp.args.JsonSave(config)))
            self.manager.wait_until_finished()
        return self.directory / str(step)

    def read_config(self, step: int) -> dict:
        """The config saved with a step."""
        return self.manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]

    def restore_latest(self, abstract_state: Any, config: dict | None = None):
        """(step, state, data_state) of the newest readable checkpoint, or None if there is none.

        `config`, when given, must match the saved one except for the fields in
        `config.RESUMABLE_CHANGES`; otherwise ConfigMismatchError names the differing keys.
        """
        failures = []
        for step in reversed(self.steps()):
            try:
                saved_config = self.read_config(step)
            except Exception as err:  # noqa: BLE001 - any read failure means a damaged checkpoint
                failures.append(self._damaged(step, err))
                continue
            if config is not None:
                diff = {k: v for k, v in differences(saved_config, config).items() if k not in RESUMABLE_CHANGES}
                if diff:
                    lines = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, a, b in
                                      ((k, *v) for k, v in diff.items()))
                    raise ConfigMismatchError(
                        f"the config differs from the one of checkpoint {self.directory / str(step)}: {lines}. "
                        "Use the original config (or a new --workdir) to continue.")
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()))
            except Exception as err:  # noqa: BLE001
                failures.append(self._damaged(step, err))
                continue
            return step, restored["state"], restored["data"]
        if failures:
            raise RuntimeError(f"no readable checkpoint in {self.directory}: " + "; ".join(failures))
        return None

    def _damaged(self, step: int, err: Exception) -> str:
        message = f"checkpoint {self.directory / str(step)} cannot be read ({type(err).__name__}: {err})"
        log.warning("%s; trying the previous one", message)
        return message

    def close(self) -> None:
        self.manager.close()


def replicated_abstract(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Shape/dtype structs of a pytree, all placed with `sharding` (the restore target)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
