"""Where a multi-process run finds its peers: the arguments of `jax.distributed.initialize`.

    settings = cluster_settings(num_processes=2)  # the rest from JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID
    jax.distributed.initialize(**settings)

The coordinator address, number of processes and process id come from arguments (the `instagan
train` flags) or, where an argument is None, from the environment. Give all three, or none of them
so that jax detects the cluster itself (TPU, SLURM, ...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# jax.distributed.initialize argument: (environment variable, `instagan train` flag, what it is)
SETTINGS = {
    "coordinator_address": ("JAX_COORDINATOR_ADDRESS", "--coordinator", "the coordinator address"),
    "num_processes": ("JAX_NUM_PROCESSES", "--num-processes", "the number of processes"),
    "process_id": ("JAX_PROCESS_ID", "--process-id", "the process id"),
}


def _from_environment(name: str, environ: Mapping[str, str]) -> str | int | None:
    variable = SETTINGS[name][0]
    text = environ.get(variable)
    if text is None or name == "coordinator_address":
        return text
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{variable}={text!r} is not an integer") from None


def cluster_settings(coordinator_address: str | None = None, num_processes: int | None = None,
                     process_id: int | None = None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `jax.distributed.initialize`: the given values, else the environment's.

    Empty when nothing is set (jax then detects the cluster); a ValueError naming what is missing
    when only some are set, or when the process id is not in [0, number of processes).
    """
    environ = os.environ if environ is None else environ
    given = {"coordinator_address": coordinator_address, "num_processes": num_processes, "process_id": process_id}
    settings = {name: value if value is not None else _from_environment(name, environ)
                for name, value in given.items()}
    missing = [name for name, value in settings.items() if value is None]
    if len(missing) == len(settings):
        return {}
    if missing:
        what = "; ".join(f"{SETTINGS[name][2]} ({SETTINGS[name][1]} or {SETTINGS[name][0]})" for name in missing)
        raise ValueError(f"multi-process settings are incomplete, missing {what}: give the coordinator "
                         "address, number of processes and process id, or none of them (TPU, SLURM)")
    count, index = settings["num_processes"], settings["process_id"]
    if count < 1:
        raise ValueError(f"the number of processes must be at least 1, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"process id {index} is out of range for {count} processes (0 to {count - 1})")
    return settings
