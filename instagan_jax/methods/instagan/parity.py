"""Compare our networks with a PyTorch reference fixture (`instagan parity FIXTURE.npz`).

A fixture is an `.npz` of reference arrays (NCHW) with a `.json` beside it (layout in
`../shared/parity/reference_small.json`): initial weights `init/<net>/<key>`, inputs `input/*`,
standalone forwards `fwd/*`, the sequential inference path `test/*` and one training iteration
(`train/*`, `final/*`, `final_stats/*`). The architecture is read off the weights; `ins_per`, the
loss weights, Adam's settings, the tolerances and the dtype come from the JSON when present.

A float64 fixture is compared in float64 (JAX's x64 mode for the run) and every check is judged. In a
float32 fixture only what float32 can settle is judged (see `_training_checks`); the rest is reported.
No input is ever changed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instagan_jax.methods.instagan import losses, reference
from instagan_jax.methods.instagan import step as training
from instagan_jax.methods.instagan.config import (
    InstaganLoss,
    InstaganModel,
    InstaganTrain,
)
from instagan_jax.methods.instagan.inference import translate
from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
from instagan_jax.nn import instances
from instagan_jax.nn.build import abstract, apply, x64_scope
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


@dataclasses.dataclass(frozen=True)
class Fixture:
    """A reference fixture: arrays, JSON metadata and what follows from them."""

    arrays: Mapping[str, np.ndarray]
    meta: Mapping
    config: InstaganModel  # its dtype is the fixture's (float64 fixtures are compared in float64)
    ins_max: int
    ins_per: int
    tolerances: Mapping[str, tuple[str, float]]

    @property
    def exact(self) -> bool:
        """Recorded in float64: every value of the whole iteration is comparable, nothing is skipped."""
        return self.config.dtype == "float64"


def _reference_state_dict(arrays: Mapping[str, np.ndarray], net: str) -> dict[str, np.ndarray]:
    return state_dict_under(arrays, f"init/{net}/")


def _config_from_weights(arrays: Mapping[str, np.ndarray], dtype: str) -> InstaganModel:
    state_dicts = {name: sd for name in reference.NETWORKS if (sd := _reference_state_dict(arrays, name))}
    return reference.infer_model_config(state_dicts, InstaganModel(dtype=dtype))


def load_fixture(path: str | Path) -> Fixture:
    """Read FIXTURE.npz and FIXTURE.json (optional) and derive the configuration."""
    arrays, meta = read_fixture(path, ("init/G_A/encoder_img.1.weight", "init/D_A/feature_img.0.module.weight_bar",
                                       "input/A_img", "input/A_segs_raw"), "reference")
    ins_max = arrays["input/A_segs_selected"].shape[1] if "input/A_segs_selected" in arrays \
        else int(meta.get("config", {}).get("ins_max", 4))
    ins_per = int(meta.get("config", {}).get("ins_per", 0)) or (
        arrays["train/step0/real_A_seg_sng"].shape[1] if "train/step0/real_A_seg_sng" in arrays else 2)
    dtype = str(meta.get("dtype", arrays["input/A_img"].dtype))
    if dtype not in ("float32", "float64"):
        raise ValueError(f"{path}: fixture dtype {dtype!r} is neither float32 nor float64")
    return Fixture(arrays, meta, _config_from_weights(arrays, dtype), ins_max, ins_per,
                   parse_tolerances(meta.get("tolerance_guidance", "")))


def import_network(fixture: Fixture, name: str) -> nnx.Module:
    """A fresh network (G_A, G_B, D_A or D_B) holding the fixture's initial weights."""
    cls = SetGenerator if name.startswith("G") else SetDiscriminator
    net = abstract(cls, fixture.config)
    reference.load_reference(net, _reference_state_dict(fixture.arrays, name))
    return net


def split_set(x: np.ndarray, image_channels: int):
    """A reference `cat([img, masks])` NCHW tensor -> image (B,H,W,C), masks (B,K,H,W,1)."""
    return to_nhwc(x[:, :image_channels]), jnp.asarray(x[:, image_channels:])[..., None]


def join_set(img, masks) -> np.ndarray:
    """Image (B,H,W,C) and masks (B,K,H,W,1) -> the reference's NCHW `cat([img, masks])`."""
    return np.concatenate([to_nchw(img), np.asarray(masks)[..., 0]], axis=1)


def _selected_sets(fixture: Fixture) -> dict[str, tuple]:
    """Per domain: image, the ins_max selected masks and their validity, from the raw slots."""
    sets = {}
    for domain in ("A", "B"):
        raw = jnp.asarray(fixture.arrays[f"input/{domain}_segs_raw"])[..., None]
        masks, valid = instances.select_largest(raw, fixture.ins_max)
        sets[domain] = (to_nhwc(fixture.arrays[f"input/{domain}_img"]), masks, valid)
    return sets


def _input_checks(checker: Checker, sets: dict[str, tuple]) -> None:
    for domain, (_, masks, _) in sets.items():
        checker.compare(f"input/{domain}_segs_selected", "outputs", np.asarray(masks)[..., 0])
        checker.compare(f"input/{domain}_seg_merged", "outputs", to_nchw(losses.merge_masks(masks)))


def _round_trip_checks(checker: Checker, fixture: Fixture) -> None:
    """Our state written back in reference layout equals the imported state_dict exactly."""
    for name in ("G_A", "G_B", "D_A", "D_B"):
        ref = _reference_state_dict(fixture.arrays, name)
        ours = reference.to_reference(import_network(fixture, name))
        same_keys = list(ours) == list(ref)
        error = max(float(np.max(np.abs(ours[k] - ref[k]))) for k in ref) if same_keys else float("inf")
        checker.checks.append(Check(f"state_dict round trip {name}", "exact", "atol", 0.0, error))


def _forward_checks(checker: Checker, fixture: Fixture, sets: dict[str, tuple]) -> None:
    """Standalone forwards from the initial weights: G on the full set, D on real and fake sets."""
    c = fixture.config.image_channels
    fakes = {}
    for gen, domain in (("G_A", "A"), ("G_B", "B")):
        img, masks, valid = sets[domain]
        fakes[gen] = apply(import_network(fixture, gen), img, masks, valid)
        checker.compare(f"fwd/{gen}_full", "outputs", join_set(*fakes[gen]))
    for disc, real_domain, gen in (("D_A", "B", "G_A"), ("D_B", "A", "G_B")):
        img, masks, valid = sets[real_domain]
        net = import_network(fixture, disc)
        checker.compare(f"fwd/{disc}_real", "outputs", to_nchw(apply(net, img, masks, valid)))
        after = reference.to_reference(net)
        prefix = f"fwd/{disc}_real_after/"
        for key in [k for k in fixture.arrays if k.startswith(prefix)]:
            checker.compare(key, "outputs", after[key[len(prefix):]])
        fake_img, fake_masks = fakes[gen]
        fake_scores = apply(import_network(fixture, disc), fake_img, fake_masks, instances.mask_valid(fake_masks))
        checker.compare(f"fwd/{disc}_fake", "outputs", to_nchw(fake_scores))
    for disc in ("D_A", "D_B"):
        key = f"fwd/{disc}_batch2_in"
        if key in fixture.arrays:
            img, masks = split_set(fixture.arrays[key], c)
            net = import_network(fixture, disc)
            checker.compare(f"fwd/{disc}_batch2_out", "outputs",
                            to_nchw(apply(net, img, masks, instances.batchwide_valid(masks))),
                            name=f"fwd/{disc}_batch2_out (reference's batch-wide slot rule)")


def _stale_union(rec_masks, valid, ins_per: int) -> np.ndarray:
    """The reference's rec_X_seg: a skipped group re-appends the last run group's reconstruction."""
    groups, group_valid = instances.split_groups(rec_masks, valid, ins_per)
    kept, last = [], None
    for group, runs in zip(groups, np.asarray(jnp.any(group_valid, axis=(1, 2)))):
        last = group if runs or last is None else last
        kept.append(last)
    return to_nchw(losses.merge_masks(jnp.concatenate(kept, axis=1)))


def _inference_checks(checker: Checker, fixture: Fixture, sets: dict[str, tuple]) -> None:
    """The reference's model.test(): sequential translation of both domains from the initial weights."""
    nets = {name: import_network(fixture, name) for name in ("G_A", "G_B")}
    for src, dst, gen, back in (("A", "B", "G_A", "G_B"), ("B", "A", "G_B", "G_A")):
        img, masks, valid = sets[src]
        out = translate(nets[gen], nets[back], img, masks, ins_per=fixture.ins_per, ins_max=fixture.ins_max)
        checker.compare(f"test/fake_{dst}_img", "outputs", to_nchw(out.fake_img))
        checker.compare(f"test/rec_{src}_img", "outputs", to_nchw(out.rec_img))
        checker.compare(f"test/fake_{dst}_seg", "outputs", to_nchw(out.fake_union))
        checker.compare(f"test/fake_{dst}_seg_mul", "outputs", np.asarray(out.fake_masks)[..., 0])
        checker.compare(f"test/rec_{src}_seg", "outputs", _stale_union(out.rec_masks, valid, fixture.ins_per),
                        name=f"test/rec_{src}_seg (reference's stale re-append of skipped groups)")


def _train_spec(fixture: Fixture) -> training.StepSpec:
    height, width = fixture.arrays["input/A_img"].shape[2:]
    train = reference_train_config(fixture.meta, InstaganTrain, ins_max=fixture.ins_max, ins_per=fixture.ins_per)
    return training.StepSpec(fixture.config, height, width, train=train,
                             loss=reference_loss_weights(fixture.meta, InstaganLoss))


def _as_reference(spec: training.StepSpec, params: Mapping[str, nnx.State],
                  spectral: Mapping[str, nnx.State]) -> dict[str, dict[str, np.ndarray]]:
    """Network states (or gradients, which have the same layout) as reference state_dicts."""
    g_def, d_def = spec.graphdefs
    out = {}
    for name, state in params.items():
        module = nnx.merge(g_def, state) if name in training.GENERATORS else nnx.merge(d_def, state, spectral[name])
        out[name] = reference.to_reference(module)
    return out


def _stats(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.array([x.sum(), np.abs(x).sum(), np.sqrt(np.square(x).sum()), np.abs(x).max()])


_DRIFT_LABEL = "norm-cancelled biases, beyond the reference's drift from init"


def _beyond_drift(ours: np.ndarray, theirs: np.ndarray, init: np.ndarray) -> np.ndarray:
    """|ours - theirs| less the reference's own drift |theirs - init|, elementwise and >= 0."""
    ours, theirs, init = (np.asarray(x, np.float64) for x in (ours, theirs, init))
    return np.maximum(np.abs(ours - theirs) - np.abs(theirs - init), 0.0)


def _final_checks(checker: Checker, fixture: Fixture, final: Mapping[str, Mapping[str, np.ndarray]],
                  informational: bool) -> None:
    """Values after the iteration, and the float64 checksums [sum, abs_sum, l2, abs_max] of every
    state tensor, each scaled to a per-element error (n, n, sqrt(n), 1) and judged as Adam updates.

    A norm-cancelled bias's exact value is its initial one (its true gradient is zero), so it is judged
    on its drift: |ours - reference| beyond the reference's own float-noise drift |reference - init|.
    """
    cancelled = fixture.meta.get("norm_cancelled_biases", {})
    for name, state in final.items():
        init = _reference_state_dict(fixture.arrays, name)
        noise = frozenset(cancelled.get(name, []))
        vectors = frozenset(k for k in state if k.endswith(("weight_u", "weight_v")))
        checker.compare_many(f"final/{name}/", "updated", state, noise | vectors, informational=informational)
        checker.compare_many(f"final/{name}/", "outputs", state, frozenset(state) - vectors,
                             label="spectral-norm vectors", informational=informational)
        drifting = [k for k in sorted(noise) if f"final/{name}/{k}" in fixture.arrays]
        if drifting:
            error = max(float(np.max(_beyond_drift(state[k], fixture.arrays[f"final/{name}/{k}"], init[k])))
                        for k in drifting)
            checker.add(f"final/{name}/* ({len(drifting)} {_DRIFT_LABEL})", "updated", error, informational)
        for label, keys in (("tensors", [k for k in state if k not in noise]), (_DRIFT_LABEL, sorted(noise))):
            keys = [k for k in keys if f"final_stats/{name}/{k}" in fixture.arrays]
            if not keys:
                continue
            errors = []
            for k in keys:
                n, theirs = state[k].size, fixture.arrays[f"final_stats/{name}/{k}"]
                ours = _stats(state[k])
                diff = _beyond_drift(ours, theirs, _stats(init[k])) if k in noise else np.abs(ours - theirs)
                errors.append(float(np.max(diff / np.array([n, n, np.sqrt(n), 1.0]))))
            checker.add(f"final_stats/{name}/* ({len(keys)} {label}, per element)", "updated", max(errors),
                        informational)


def _gradient_scale(fixture: Fixture, prefix: str) -> float:
    """The largest reference gradient of one network at one step (the fixture's tensors under `prefix`)."""
    return max(float(np.max(np.abs(fixture.arrays[prefix + k]))) for k in keys_under(fixture.arrays, prefix))


def _below_noise_floor(fixture: Fixture, prefix: str) -> dict[str, np.ndarray]:
    """Per tensor, the elements whose reference gradient is within the gradient tolerance of zero.

    Adam's first step is ~lr * g / (|g| + eps), so where the sign of g is not settled by the gradient
    check (|g| <= rtol * the network's largest gradient) the updated values may differ by up to 2 lr.
    """
    _, rtol = fixture.tolerances["gradients"]
    floor = rtol * _gradient_scale(fixture, prefix)
    return {k: np.abs(fixture.arrays[prefix + k]) <= floor for k in keys_under(fixture.arrays, prefix)}


# The real image each step-0 generator call of the reference is compared with by an L1 term, in call
# order: forward() translates A (ctx_A) and reconstructs it (cyc_A), then B; backward_G's identity
# calls are G_B on real A (idt_B) and G_A on real B (idt_A).
_STEP0_FORWARD_TARGETS = "AABB"
_STEP0_IDENTITY_TARGETS = {"G_B": "A", "G_A": "B"}


def step0_l1_ties(fixture: Fixture) -> tuple[int, float]:
    """(count, smallest gap) of real-image pixels within the output tolerance of a step-0 generator
    output of the reference: there the L1 gradient's sign is not settled between frameworks."""
    _, atol = fixture.tolerances["outputs"]
    c = fixture.config.image_channels
    calls = sorted(k for k in fixture.arrays if re.match(r"train/call/\d+_s0_(fwd|G)_G_[AB]/out$", k))
    forward = [k for k in calls if "_s0_fwd_" in k]
    count, gap = 0, float("inf")
    for key in calls:
        phase, net = re.search(r"_s0_(fwd|G)_(G_[AB])/", key).groups()
        target = _STEP0_FORWARD_TARGETS[forward.index(key)] if phase == "fwd" else _STEP0_IDENTITY_TARGETS[net]
        distance = np.abs(fixture.arrays[key][:, :c] - fixture.arrays[f"input/{target}_img"])
        count += int(np.sum(distance < atol))
        gap = min(gap, float(distance.min()))
    return count, gap


INFORMATIONAL_WHY = (
    "float32 fixture: values after the first Adam step are reported, not judged. Adam's first step is "
    "~lr * g / (|g| + eps), so every parameter whose true gradient is within float32 noise of zero moves by "
    "+-lr with an arbitrary sign, and later groups amplify that; no framework can match such a run element "
    "by element. The float64 fixture checks the whole iteration.")


def _training_checks(checker: Checker, fixture: Fixture) -> None:
    """One training iteration from the initial weights: every sub-step (group) on its own, then the
    whole jitted iteration (final values, checksums and visuals).

    Gradients are judged relative to the network's largest gradient at that step (a norm-cancelled
    bias's true gradient is zero: its own scale is float noise). Float64 fixture: everything is judged.
    Float32 fixture: the first group's inputs, losses and gradients are judged, and its Adam step except
    where the reference gradient is below the gradient tolerance; the rest is informational, and so are
    the generators' first-step gradients when an input pixel ties with a generator output (L1 kink).
    """
    if "train/step0/real_A_img_sng" not in fixture.arrays:
        return
    spec = _train_spec(fixture)
    names = training.GENERATORS + training.DISCRIMINATORS
    params, spectral = training.split_networks({n: import_network(fixture, n) for n in names})
    state = training.state_from_params(spec, params, spectral)
    batch = {}
    for d in ("A", "B"):
        raw = jnp.asarray(fixture.arrays[f"input/{d}_segs_raw"])[..., None]
        batch.update({f"img_{d}": to_nhwc(fixture.arrays[f"input/{d}_img"]), f"masks_{d}": raw,
                      f"valid_{d}": instances.mask_valid(raw)})
    real = training.select_sets(spec, batch)
    groups = training.mask_groups(spec, real)
    images_before = {d: real[d].img for d in real}  # each group's input image
    steps = fixture.meta.get("train_steps", [])
    exempt_count = 0
    ties, gap = (0, 0.0) if fixture.exact else step0_l1_ties(fixture)
    for i, (carry, out) in enumerate(training.sub_steps(spec, state, batch)):
        root = f"train/step{i}/"
        info = i > 0 and not fixture.exact
        for src in ("A", "B"):
            checker.compare(f"{root}real_{src}_img_sng", "outputs", to_nchw(images_before[src]), informational=info)
            checker.compare(f"{root}real_{src}_seg_sng", "outputs", np.asarray(groups.masks[src][i])[..., 0],
                            informational=info)
        images_before = carry.img
        for src, dst in (("A", "B"), ("B", "A")):
            t = out.translated[src]
            checker.compare(f"{root}fake_{dst}_mul", "outputs", join_set(t.fake_img, t.set_masks), informational=info)
        if i < len(steps):
            for name, value in out.losses.items():
                if f"loss_{name}" in steps[i]:
                    theirs = steps[i][f"loss_{name}"]
                    checker.add(f"{root}loss_{name}", "losses",
                                abs(float(value) - theirs) / max(abs(theirs), 1e-12), info)
        grads = _as_reference(spec, out.grads, carry.state.spectral)
        after = _as_reference(spec, carry.state.params, carry.state.spectral)
        for opt, nets in (("opt_G", training.GENERATORS), ("opt_D", training.DISCRIMINATORS)):
            for net in nets:
                grad_prefix = f"{root}{opt}/grad/{net}/"
                if not keys_under(fixture.arrays, grad_prefix):
                    continue
                tied = ties > 0 and opt == "opt_G"
                checker.compare_many(grad_prefix, "gradients", grads[net], informational=info or tied,
                                     scale=_gradient_scale(fixture, grad_prefix))
                exempt = None if fixture.exact else _below_noise_floor(fixture, grad_prefix)
                if exempt and not (info or tied):
                    exempt_count += sum(int(v.sum()) for k, v in exempt.items()
                                        if f"{root}{opt}/after/{net}/{k}" in fixture.arrays)
                checker.compare_many(f"{root}{opt}/after/{net}/", "updated", after[net],
                                     informational=info or tied, exempt=exempt)

    iteration = jax.jit(training.train_step, static_argnums=0)
    final_state, _, visuals = iteration(spec, state, batch)
    final_info = not fixture.exact and spec.n_groups > 1
    _final_checks(checker, fixture, _as_reference(spec, final_state.params, final_state.spectral), final_info)
    for d, (src, dst) in (("A", ("A", "B")), ("B", ("B", "A"))):
        v = visuals[d]
        checker.compare(f"train/visual/fake_{dst}_img", "outputs", to_nchw(v.fake_img), informational=final_info)
        checker.compare(f"train/visual/rec_{src}_img", "outputs", to_nchw(v.rec_img), informational=final_info)
        checker.compare(f"train/visual/fake_{dst}_seg", "outputs", to_nchw(v.fake_union), informational=final_info)
        checker.compare(f"train/visual/rec_{src}_seg", "outputs",
                        _stale_union(v.rec_masks, real[src].valid, spec.ins_per),
                        name=f"train/visual/rec_{src}_seg (reference's stale re-append of skipped groups)",
                        informational=final_info)
    if ties:
        checker.notes.append(f"float32 fixture: {ties} input pixel value(s) lie within the output tolerance of a "
                             f"step-0 generator output (closest {gap:.1e}); the sign of the L1 gradient is not "
                             "settled there, so the generators' step-0 gradients and Adam steps are reported, not judged")
    if not fixture.exact:
        checker.notes.append(f"float32 fixture: the first Adam step is judged except for {exempt_count} element(s) "
                             "whose reference gradient is within the gradient tolerance of zero (sign unsettled)")
        if final_info:
            checker.notes.append(INFORMATIONAL_WHY)


def run_parity(path: str | Path, notes: list[str] | None = None) -> list[Check]:
    """Every check of the fixture that this version of the library covers (remarks go to `notes`)."""
    fixture = load_fixture(path)
    checker = Checker(fixture.arrays, fixture.tolerances)
    with x64_scope(fixture.config.dtype):
        sets = _selected_sets(fixture)
        _input_checks(checker, sets)
        _round_trip_checks(checker, fixture)
        _forward_checks(checker, fixture, sets)
        _inference_checks(checker, fixture, sets)
        _training_checks(checker, fixture)
    checker.notes.insert(0, f"fixture dtype {fixture.config.dtype}: compared in {fixture.config.dtype}")
    if notes is not None:
        notes.extend(checker.notes)
    return checker.checks


