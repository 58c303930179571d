"""`instagan convert`: the PyTorch reference's checkpoints -> a run of ours, and back, for any method
with a reference mapping (`Method.reference`: its networks' state_dict keys and layouts).

    done = from_torch(["checkpoints/sheep2giraffe"], "runs/imported", config)   # checkpoint 0 of a new run
    paths = to_torch("out/", workdir="runs/demo")                                # <step>_net_<NET>.pth
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from instagan_jax import methods
from instagan_jax.checkpoint import Checkpoints, saved_steps
from instagan_jax.config import Config, validate
from instagan_jax.loop import check_workdir
from instagan_jax.nn.build import x64_scope
from instagan_jax.torch_io import (
    read_torch_state_dict,
    reference_files,
    require_torch,
    strip_data_parallel_prefix,
    write_torch_state_dict,
)
from instagan_jax.trained import restore_state, saved_config


def _with_reference(method: methods.Method) -> methods.Reference:
    """The method's reference mapping, or ValueError naming the methods that have one."""
    if method.reference is None:
        having = [m.title for m in map(methods.get, methods.names()) if m.reference is not None]
        raise ValueError(f"{methods.a_run(method.title)} has no PyTorch reference here (conversion works for "
                         f"{', '.join(having)} runs)")
    return method.reference


def _check_reference_architecture(config: Config) -> None:
    """ValueError where the model has settings the reference's networks lack (`beyond_reference`)."""
    if beyond := config.model.beyond_reference():
        raise ValueError(f"{', '.join(beyond)} has no counterpart in the PyTorch reference's networks: "
                         "conversion needs the reference's architecture (the default)")


@dataclasses.dataclass
class Imported:
    """What `from_torch` did."""

    files: dict[str, Path]  # network -> .pth file read
    config: Config  # the run's config (model section inferred from the weights)
    fresh: list[str]  # networks without a file, freshly initialised
    checkpoint: Path  # the checkpoint folder written


def from_torch(sources: Sequence[str | Path], workdir: str | Path, config: Config,
               epoch: str | None = None) -> Imported:
    """Write the reference's `.pth` networks of `config`'s method as checkpoint 0 of a new run.

    `sources`: one folder of `<epoch>_net_<NET>.pth` files (`epoch` None: latest, else the largest
    number) or the files themselves. The model section of `config` takes the architecture read off the
    weights (its dtype is kept); optimiser states are fresh. Refuses a workdir that has checkpoints.
    """
    require_torch()
    method = methods.get(config.method)
    reference = _with_reference(method)
    _check_reference_architecture(config)
    workdir = Path(workdir)
    check_workdir(workdir)
    if steps := saved_steps(workdir):
        raise ValueError(f"{workdir / 'checkpoints'} already has checkpoints {steps}: choose a new --out")
    files = reference_files(sources, epoch, reference.networks, reference.required)
    state_dicts = {name: strip_data_parallel_prefix(read_torch_state_dict(path)) for name, path in files.items()}
    config = dataclasses.replace(config, model=reference.infer_model(state_dicts, config.model))
    validate(config)
    with x64_scope(config.model.dtype):  # a file that does not fit fails here, before anything is written
        state = reference.state_from_torch(method.make_spec(config, 1.0), state_dicts, config.train.seed)
        checkpoints = Checkpoints(workdir, keep=config.log.keep_checkpoints)
        try:
            folder = checkpoints.save(0, state, {}, config.to_dict())  # {}: no data position yet
        finally:
            checkpoints.close()
    return Imported(files, config, [name for name in reference.networks if name not in files], folder)


def reference_state_dicts(config: Config, state) -> dict[str, dict]:
    """A train state's networks as the reference's state_dicts, by network name."""
    method = methods.get(config.method)
    reference = _with_reference(method)
    _check_reference_architecture(config)
    with x64_scope(config.model.dtype):
        return reference.to_torch(method.make_spec(config, 1.0), state)


def to_torch(out: str | Path, workdir: str | Path | None = None,
             checkpoint: str | Path | None = None) -> list[Path]:
    """Write a checkpoint's networks as the reference's `<step>_net_<NET>.pth` files into `out`
    (in the run's dtype); FileExistsError naming a file that is already there."""
    require_torch()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    saved = saved_config(workdir, checkpoint)
    _with_reference(methods.get(saved.method))
    _check_reference_architecture(saved)
    config, step, state, _ = restore_state(workdir, checkpoint)
    state_dicts = reference_state_dicts(config, state)
    paths = {name: out / f"{step}_net_{name}.pth" for name in state_dicts}
    if existing := [str(p) for p in paths.values() if p.exists()]:
        raise FileExistsError(f"not overwriting {existing}: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return [write_torch_state_dict(path, state_dicts[name]) for name, path in paths.items()]
