"""The networks of a trained run, for translating, evaluating, converting and fine-tuning.

    model = load_trained(workdir="runs/demo")              # the newest good checkpoint
    model = load_trained(checkpoint="runs/demo/checkpoints/2000")
    forward, backward = model.generators("AtoB")           # G_A (A -> B), G_B (B -> A)
    translate = model.translator("AtoB")                   # the method's one inference path

A checkpoint folder is `<workdir>/checkpoints/<step>`, as `instagan train` writes it (and
`instagan convert --from-torch`). Float64 models are loaded in float64: use them inside
`nn.build.x64_scope(model.config.model.dtype)`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
from flax import nnx

from instagan_jax import methods
from instagan_jax.checkpoint import Checkpoints, replicated_abstract
from instagan_jax.config import Config
from instagan_jax.nn.build import x64_scope

DIRECTIONS = {"AtoB": ("G_A", "G_B"), "BtoA": ("G_B", "G_A")}  # (forward, backward) generator names


@dataclasses.dataclass
class TrainedModel:
    """A run's networks at one checkpoint, with the run's config (and so its method)."""

    config: Config
    step: int
    checkpoint: Path  # the checkpoint folder read
    networks: dict[str, nnx.Module]  # InstaGAN, CycleGAN: G_A (A -> B), G_B (B -> A), D_A, D_B; pix2pix: G, D

    @property
    def method(self) -> methods.Method:
        return methods.get(self.config.method)

    def translator(self, direction: str = "AtoB", **options) -> methods.Translator:
        """The method's inference, as `instagan translate` and `instagan eval` run it:
        `translate(img (B,H,W,3), slots (B,K,H,W,1) largest first) -> (image, masks or None)`;
        `options`: the rest of `methods.TranslateOptions` (ins_per, exemplar, user_mask, size)."""
        return self.method.translator(self, methods.TranslateOptions(direction=direction, **options))

    def generators(self, direction: str) -> tuple[nnx.Module, nnx.Module]:
        """(forward, backward) generators of 'AtoB' or 'BtoA' (of a method with both directions)."""
        if "G_A" not in self.networks:
            raise ValueError(f"{methods.a_run(methods.get(self.config.method).title)} has one direction (A -> B): its generator is networks['G']")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {sorted(DIRECTIONS)}, got {direction!r}")
        forward, backward = DIRECTIONS[direction]
        return self.networks[forward], self.networks[backward]


def locate(workdir: str | Path | None = None, checkpoint: str | Path | None = None) -> tuple[Path, int | None]:
    """(workdir, step) from either a run's workdir (step None: the newest) or one checkpoint folder."""
    if (workdir is None) == (checkpoint is None):
        raise ValueError("give either a workdir (--workdir RUN) or a checkpoint folder (--checkpoint RUN/checkpoints/N)")
    if workdir is not None:
        return Path(workdir), None
    folder = Path(checkpoint)
    if not folder.is_dir() or folder.parent.name != "checkpoints" or not folder.name.isdigit():
        raise ValueError(f"{checkpoint} is not a checkpoint folder: expected RUN/checkpoints/<step> "
                         "(or pass the run's folder with --workdir)")
    return folder.parent.parent, int(folder.name)


def location(path: str | Path) -> dict[str, Path]:
    """`{"checkpoint": path}` for a path of the form RUN/checkpoints/<step>, else `{"workdir": path}`:
    keyword arguments of `locate`, `restore_state` and `load_trained`."""
    path = Path(path)
    is_checkpoint = path.parent.name == "checkpoints" and path.name.isdigit()
    return {"checkpoint" if is_checkpoint else "workdir": path}


def _named_config(checkpoints: Checkpoints, step: int) -> dict:
    """The config saved with one step; ValueError naming the folder if it cannot be read."""
    try:
        return checkpoints.read_config(step)
    except Exception as err:  # noqa: BLE001 - any read failure means a damaged checkpoint
        raise ValueError(f"{checkpoints.mark_damaged(step, err, falling_back=False)}: choose another step in {checkpoints.directory}") from err


def saved_config(workdir: str | Path | None = None, checkpoint: str | Path | None = None) -> Config:
    """The config saved with a run's newest (or one) checkpoint, without reading any array."""
    run, step = locate(workdir, checkpoint)
    checkpoints = Checkpoints(run, read_only=True)
    try:
        if not checkpoints.steps():
            raise FileNotFoundError(f"no checkpoints in {checkpoints.directory}")
        saved = checkpoints.newest_config() if step is None else _named_config(checkpoints, step)
    finally:
        checkpoints.close()
    return methods.config_from_dict(methods.upgrade_saved(saved))


def restore_state(workdir: str | Path | None = None, checkpoint: str | Path | None = None, *,
                  sharding: jax.sharding.Sharding | None = None):
    """(config, step, TrainState, checkpoint folder) of a run: its newest good checkpoint, or the one named.

    The state lives on the first device (or as `sharding` places it), in the model's dtype (64-bit mode
    is on while restoring).
    """
    run, step = locate(workdir, checkpoint)
    checkpoints = Checkpoints(run, read_only=True)
    try:
        steps = checkpoints.steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoints in {checkpoints.directory}")
        saved = checkpoints.newest_config() if step is None else _named_config(checkpoints, step)
        config = methods.config_from_dict(methods.upgrade_saved(saved))
        method = methods.get(config.method)
        spec = method.make_spec(config, 1.0)
        sharding = sharding or jax.sharding.SingleDeviceSharding(jax.devices()[0])
        with x64_scope(config.model.dtype):
            abstract = replicated_abstract(jax.eval_shape(lambda: method.init_state(spec, 0)), sharding)
            if step is None:
                step, state, _ = checkpoints.restore_latest(abstract)
            else:
                state, _ = checkpoints.restore(step, abstract)
    finally:
        checkpoints.close()
    return config, int(step), state, checkpoints.directory / str(step)


def networks_from_state(config: Config, state) -> dict[str, nnx.Module]:
    """The modules of a train state by name (all their variables: spectral vectors, batch statistics)."""
    method = methods.get(config.method)
    with x64_scope(config.model.dtype):
        return method.modules(method.make_spec(config, 1.0), state)


def load_trained(workdir: str | Path | None = None, checkpoint: str | Path | None = None) -> TrainedModel:
    """The networks of a run's newest good checkpoint (`workdir`) or of one checkpoint folder."""
    config, step, state, folder = restore_state(workdir, checkpoint)
    return TrainedModel(config, step, folder, networks_from_state(config, state))
