"""CycleGAN against the reference fork's recorded run (`instagan parity cyclegan_small_f64.npz`).

The fixture (layout in its JSON) holds the initial state_dicts `init/<net>/*`, the batch `input/A|B`,
no-grad forwards from init `fwd/*` (`fwd/D_A` scores the real B; `fwd/D_A_after/*` are D_A's u, v
after that call), and per iteration `train/iter<i>/state/<net>/*` (full state_dicts) and
`train/iter<i>/visual/*`, with the losses in the JSON's `train_losses`. The architecture is read off
the weights, the run's settings off the JSON's `opt`. Only the method's public functions are used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from instagan_jax.config import Config, DataConfig
from instagan_jax.methods.cyclegan import step as cyclegan
from instagan_jax.methods.cyclegan.reference import (
    infer_model_config,
    load_reference,
    to_reference,
)
from instagan_jax.nn.build import ResnetModel, abstract, apply, x64_scope
from instagan_jax.nn.losses import CycleLossWeights
from instagan_jax.parity.common import (
    Check,
    Checker,
    keys_under,
    parse_tolerances,
    read_fixture,
    reference_loss_weights,
    reference_train_config,
    state_dict_under,
    to_nchw,
    to_nhwc,
)

# the reference's visual name -> (our row, our column)
VISUALS = {"real_A": ("A", "real"), "fake_B": ("A", "fake"), "rec_A": ("A", "rec"), "idt_B": ("A", "idt"),
           "real_B": ("B", "real"), "fake_A": ("B", "fake"), "rec_B": ("B", "rec"), "idt_A": ("B", "idt")}
# options of the reference run that this port implements only in one way
SUPPORTED_OPTIONS = {"model": "cycle_gan", "netG": "basic", "netD": "basic", "norm": "instance", "n_layers_D": 3,
                     "no_lsgan": False, "direction": "AtoB", "lr_policy": "lambda"}


@dataclasses.dataclass(frozen=True)
class Fixture:
    """A CycleGAN reference fixture: arrays, JSON metadata and the run's config."""

    arrays: Mapping[str, np.ndarray]
    meta: Mapping
    config: Config
    tolerances: Mapping[str, tuple[str, float]]


def _config(arrays: Mapping[str, np.ndarray], meta: Mapping) -> Config:
    """The reference run as our config: architecture off the init weights, the rest off `opt`."""
    opt = meta["opt"]
    unsupported = {k: opt[k] for k, v in SUPPORTED_OPTIONS.items() if k in opt and opt[k] != v}
    if unsupported:
        raise ValueError(f"reference options not implemented here: {unsupported} (supported: {SUPPORTED_OPTIONS})")
    init = {name: state_dict_under(arrays, f"init/{name}/") for name in cyclegan.NETWORKS}
    model = infer_model_config(init, ResnetModel(dtype=str(meta.get("dtype", "float32"))))
    loss = reference_loss_weights(meta, CycleLossWeights)
    train = reference_train_config(meta, batch_size=int(opt["batch_size"]))
    height, width = arrays["input/A"].shape[2:]
    return Config(method="cyclegan", model=model, loss=loss, data=DataConfig(crop_size=(height, width)), train=train)


def load_fixture(path: str | Path) -> Fixture:
    """Read FIXTURE.npz and its JSON (required: the run's options and losses are there)."""
    arrays, meta = read_fixture(path, ("init/G_A/model.1.weight", "init/D_A/model.0.module.weight_bar", "input/A"),
                                "CycleGAN")
    return Fixture(arrays, meta, _config(arrays, meta), parse_tolerances(meta.get("tolerance_guidance", "")))


def import_network(fixture: Fixture, name: str):
    """Network `name` holding the fixture's initial state."""
    module = abstract(cyclegan.network_class(name), fixture.config.model)
    load_reference(module, state_dict_under(fixture.arrays, f"init/{name}/"))
    return module


def _round_trip_checks(checker: Checker, fixture: Fixture) -> None:
    """Each imported network written back equals its state_dict exactly (same keys, same order)."""
    for name in cyclegan.NETWORKS:
        theirs = state_dict_under(fixture.arrays, f"init/{name}/")
        ours = to_reference(import_network(fixture, name))
        same_keys = list(ours) == list(theirs)
        error = max(float(np.max(np.abs(ours[k] - theirs[k]))) for k in theirs) if same_keys else float("inf")
        checker.checks.append(Check(f"state_dict round trip {name}", "exact", "atol", 0.0, error))


def _forward_checks(checker: Checker, fixture: Fixture) -> None:
    """G_A(A), G_B(B) and D_A(B) from init, and D_A's u, v after that call."""
    real = {d: to_nhwc(fixture.arrays[f"input/{d}"]) for d in ("A", "B")}
    for gen, domain in (("G_A", "A"), ("G_B", "B")):
        checker.compare(f"fwd/{gen}", "outputs", to_nchw(cyclegan.translate(import_network(fixture, gen), real[domain])))
    disc = import_network(fixture, "D_A")
    checker.compare("fwd/D_A", "outputs", to_nchw(apply(disc, real["B"])), name="fwd/D_A (of the real B)")
    checker.compare_many("fwd/D_A_after/", "outputs", to_reference(disc), label="spectral-norm vectors")


def _recorded_losses(fixture: Fixture) -> list[dict[str, float]]:
    """Each recorded iteration's losses; ValueError unless they and the `train/iter<i>/` arrays agree."""
    losses = fixture.meta["train_losses"]
    iterations = {key.split("/")[1] for key in fixture.arrays if key.startswith("train/")}
    if iterations != {f"iter{i}" for i in range(len(losses))}:
        raise ValueError(f"fixture arrays cover {sorted(iterations)} but its JSON has {len(losses)} train_losses")
    return losses


def _training_checks(checker: Checker, fixture: Fixture) -> None:
    """The recorded iterations, jitted: losses, every state tensor after each, the visuals."""
    spec = cyclegan.Spec.from_config(fixture.config, 1.0)
    state = cyclegan.state_from_networks(spec, {n: import_network(fixture, n) for n in cyclegan.NETWORKS})
    batch = {f"img_{d}": to_nhwc(fixture.arrays[f"input/{d}"]) for d in ("A", "B")}
    step = jax.jit(cyclegan.train_step, static_argnums=0)
    for i, losses in enumerate(_recorded_losses(fixture)):
        root = f"train/iter{i}/"
        state, metrics, visuals = step(spec, state, batch)
        for key, theirs in losses.items():
            name = key.removeprefix("loss_")
            error = abs(float(metrics[name]) - theirs) / max(abs(theirs), 1e-12) if name in metrics else float("inf")
            checker.add(f"{root}{key}", "losses", error)
        for name, module in cyclegan.modules(spec, state).items():
            ours = to_reference(module)
            vectors = frozenset(k for k in ours if k.endswith(("weight_u", "weight_v")))
            checker.compare_many(f"{root}state/{name}/", "updated", ours, skip=vectors)
            checker.compare_many(f"{root}state/{name}/", "outputs", ours, skip=frozenset(ours) - vectors,
                                 label="spectral-norm vectors")
        for key in keys_under(fixture.arrays, f"{root}visual/"):
            row, column = VISUALS[key]
            checker.compare(f"{root}visual/{key}", "outputs", to_nchw(visuals[row][column]))


def run_parity(path: str | Path, notes: list[str] | None = None) -> list[Check]:
    """Every check of the fixture (remarks go to `notes`)."""
    fixture = load_fixture(path)
    checker = Checker(fixture.arrays, fixture.tolerances)
    dtype = fixture.config.model.dtype
    with x64_scope(dtype):
        _round_trip_checks(checker, fixture)
        _forward_checks(checker, fixture)
        _training_checks(checker, fixture)
    checker.notes.append(f"fixture dtype {dtype}: compared in {dtype}")
    if notes is not None:
        notes.extend(checker.notes)
    return checker.checks
