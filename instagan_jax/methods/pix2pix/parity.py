"""Compare pix2pix with a reference fixture (`instagan parity pix2pix_small_f64.npz`).

The fixture (layout in its JSON) holds the initial state_dicts `init/G|D/*`, one aligned batch
`input/A|B`, train-mode forwards from the initial weights (`fwd/G` = G(A), `fwd/D` = D(A, B) with
`fwd/D_after/*` its spectral-norm vectors after that call) and, for each iteration, the full state
after it `train/iter<i>/state/<net>/*` (running statistics, num_batches_tracked and u, v included),
its visuals and losses. A float64 fixture is compared in float64; every check is judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from instagan_jax.methods.pix2pix import reference as pix2pix_reference
from instagan_jax.methods.pix2pix import step as pix2pix
from instagan_jax.methods.pix2pix.config import Pix2pixLoss, Pix2pixModel
from instagan_jax.nn.build import apply, x64_scope
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

LOSS_NAMES = ("G_GAN", "G_L1", "D_real", "D_fake")
# state tensors by what changes them, judged separately (all as Adam-updated values)
STATE_GROUPS = {
    "parameters": lambda key: key.endswith(("weight", "bias", "weight_bar")),
    "running statistics": lambda key: key.endswith(("running_mean", "running_var")),
    "num_batches_tracked": lambda key: key.endswith("num_batches_tracked"),
    "spectral-norm vectors": lambda key: key.endswith(("weight_u", "weight_v")),
}


def load_fixture(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """The fixture's arrays and JSON metadata; KeyError if it is not a pix2pix fixture."""
    return read_fixture(path, ("init/G/model.model.0.weight", "init/D/model.0.module.weight_bar", "input/A", "input/B"),
                        "pix2pix")


def fixture_spec(arrays: Mapping[str, np.ndarray], meta: Mapping) -> pix2pix.Spec:
    """The method's spec for the fixture's options (widths read off the weights)."""
    opt = meta.get("opt", {})
    model = Pix2pixModel(ngf=arrays["init/G/model.model.0.weight"].shape[0],
                         ndf=arrays["init/D/model.0.module.weight_bar"].shape[0],
                         image_channels=arrays["input/A"].shape[1], dtype=str(meta.get("dtype", "float32")),
                         dropout=not opt.get("no_dropout", False))
    train = reference_train_config(meta, batch_size=arrays["input/A"].shape[0])
    height, width = arrays["input/A"].shape[2:]
    return pix2pix.Spec(model, reference_loss_weights(meta, Pix2pixLoss), train, height, width)


def _round_trip_checks(checker: Checker, spec: pix2pix.Spec, init: Mapping[str, Mapping]) -> None:
    """Our state written back in reference layout equals the imported state_dict exactly, key order included."""
    state = pix2pix_reference.import_networks(spec, init)
    for name, ours in pix2pix_reference.reference_state(spec, state).items():
        ref = init[name]
        same_keys = list(ours) == list(ref)
        error = max(float(np.max(np.abs(ours[k] - ref[k]))) for k in ref) if same_keys else float("inf")
        checker.checks.append(Check(f"state_dict round trip {name}", "exact", "atol", 0.0, error))


def _forward_checks(checker: Checker, spec: pix2pix.Spec, init: Mapping[str, Mapping],
                    batch: Mapping[str, jax.Array]) -> None:
    """Train-mode forwards from the initial weights: G(A), then D on the real pair (A, B)."""
    nets = pix2pix.modules(spec, pix2pix_reference.import_networks(spec, init))
    checker.compare("fwd/G", "outputs", to_nchw(pix2pix.translate(nets["G"], batch["img_A"])))
    pair = np.concatenate([batch["img_A"], batch["img_B"]], axis=-1)
    checker.compare("fwd/D", "outputs", to_nchw(apply(nets["D"], pair)), name="fwd/D (real pair A, B)")
    checker.compare_many("fwd/D_after/", "outputs", pix2pix_reference.to_reference(nets["D"]), label="spectral-norm vectors")


def _training_checks(checker: Checker, spec: pix2pix.Spec, init: Mapping[str, Mapping],
                     batch: Mapping[str, jax.Array], losses: list[Mapping[str, float]]) -> None:
    """Each recorded iteration: losses, every state tensor after it, visuals."""
    state = pix2pix_reference.import_networks(spec, init)
    step = jax.jit(pix2pix.train_step, static_argnums=0)
    iterations = sorted({int(k.split("/")[1][4:]) for k in checker.arrays if k.startswith("train/iter")})
    for i in iterations:
        root = f"train/iter{i}/"
        state, metrics, visuals = step(spec, state, batch)
        for name in LOSS_NAMES:
            if i < len(losses) and f"loss_{name}" in losses[i]:
                theirs = losses[i][f"loss_{name}"]
                checker.add(f"{root}loss_{name}", "losses", abs(float(metrics[name]) - theirs) / max(abs(theirs), 1e-12))
        for net, ours in pix2pix_reference.reference_state(spec, state).items():
            prefix = f"{root}state/{net}/"
            for label, belongs in STATE_GROUPS.items():
                others = frozenset(k for k in keys_under(checker.arrays, prefix) if not belongs(k))
                checker.compare_many(prefix, "updated", ours, skip=others, label=label)
        row = visuals["AtoB"]
        for key, column in (("real_A", "input"), ("fake_B", "output"), ("real_B", "target")):
            checker.compare(f"{root}visual/{key}", "outputs", to_nchw(row[column]))


def run_parity(path: str | Path, notes: list[str] | None = None) -> list[Check]:
    """Every check of a pix2pix fixture (remarks go to `notes`)."""
    arrays, meta = load_fixture(path)
    spec = fixture_spec(arrays, meta)
    checker = Checker(arrays, parse_tolerances(meta.get("tolerance_guidance", "")))
    with x64_scope(spec.model.dtype):
        init = {name: state_dict_under(arrays, f"init/{name}/") for name in pix2pix.NETWORKS}
        batch = {"img_A": to_nhwc(arrays["input/A"]), "img_B": to_nhwc(arrays["input/B"])}
        _round_trip_checks(checker, spec, init)
        _forward_checks(checker, spec, init, batch)
        _training_checks(checker, spec, init, batch, meta.get("train_losses", []))
    checker.notes.append(f"fixture dtype {spec.model.dtype}: compared in {spec.model.dtype}")
    if notes is not None:
        notes.extend(checker.notes)
    return checker.checks
