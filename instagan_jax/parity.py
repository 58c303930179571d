"""Compare our networks with a PyTorch reference fixture (`instagan parity FIXTURE.npz`).

A fixture is an `.npz` of reference arrays (NCHW) with a `.json` beside it (layout in
`../shared/parity/reference_small.json`): initial weights `init/<net>/<key>`, inputs `input/*`,
standalone forwards `fwd/*`, the sequential inference path `test/*` and one training iteration
(`train/*`, `final/*`, `final_stats/*`). The architecture is read off the weights; `ins_per`, the
loss weights, Adam's settings and the tolerances come from the JSON when present.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from instagan_jax import convert, instances, losses, training
from instagan_jax.inference import translate
from instagan_jax.models import ModelConfig, SetDiscriminator, SetGenerator, abstract, apply

DEFAULT_TOLERANCES = {
    "outputs": ("atol", 1e-4),
    "losses": ("rtol", 1e-4),
    "gradients": ("rtol", 1e-3),
    "updated": ("atol", 1e-6),
}
_TOLERANCE_WORDS = {"image": "outputs", "output": "outputs", "loss": "losses",
                    "gradient": "gradients", "adam": "updated", "updated": "updated"}


@dataclasses.dataclass(frozen=True)
class Check:
    """One comparison of an array of ours with the reference's."""

    name: str
    kind: str
    mode: str
    tolerance: float
    error: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.error)) and self.error <= self.tolerance


@dataclasses.dataclass(frozen=True)
class Fixture:
    """A reference fixture: arrays, JSON metadata and what follows from them."""

    arrays: Mapping[str, np.ndarray]
    meta: Mapping
    config: ModelConfig
    ins_max: int
    ins_per: int
    tolerances: Mapping[str, tuple[str, float]]


def parse_tolerances(text: str) -> dict[str, tuple[str, float]]:
    """Read 'atol 1e-4 on images/..., rtol 1e-3 on gradients, ...' into {kind: (mode, value)}."""
    found = dict(DEFAULT_TOLERANCES)
    for mode, value, subject in re.findall(r"\b(atol|rtol)\s+([0-9.]+e-?\d+|[0-9.]+)\s+on\s+([^,;(]+)", text):
        subject = subject.lower()
        for word, kind in _TOLERANCE_WORDS.items():
            if word in subject:
                found[kind] = (mode, float(value))
                break
    return found


def _reference_state_dict(arrays: Mapping[str, np.ndarray], net: str) -> dict[str, np.ndarray]:
    prefix = f"init/{net}/"
    return {k[len(prefix):]: arrays[k] for k in arrays if k.startswith(prefix)}


def _config_from_weights(arrays: Mapping[str, np.ndarray]) -> ModelConfig:
    stem = arrays["init/G_A/encoder_img.1.weight"]
    blocks = {int(m.group(1)) for k in arrays
              if (m := re.match(r"init/G_A/encoder_img\.(\d+)\.conv_block\.", k))}
    ndf = arrays["init/D_A/feature_img.0.module.weight_bar"].shape[0]
    return ModelConfig(ngf=stem.shape[0], ndf=ndf, n_blocks=len(blocks), image_channels=stem.shape[1])


def load_fixture(path: str | Path) -> Fixture:
    """Read FIXTURE.npz and FIXTURE.json (optional) and derive the configuration."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"parity fixture not found: {path}")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    for key in ("init/G_A/encoder_img.1.weight", "init/D_A/feature_img.0.module.weight_bar",
                "input/A_img", "input/A_segs_raw"):
        if key not in arrays:
            raise KeyError(f"{path}: not a reference fixture (no array {key!r})")
    json_path = path.with_suffix(".json")
    meta = json.loads(json_path.read_text()) if json_path.is_file() else {}
    ins_max = arrays["input/A_segs_selected"].shape[1] if "input/A_segs_selected" in arrays \
        else int(meta.get("config", {}).get("ins_max", 4))
    ins_per = int(meta.get("config", {}).get("ins_per", 0)) or (
        arrays["train/step0/real_A_seg_sng"].shape[1] if "train/step0/real_A_seg_sng" in arrays else 2)
    return Fixture(arrays, meta, _config_from_weights(arrays), ins_max, ins_per,
                   parse_tolerances(meta.get("tolerance_guidance", "")))


def import_network(fixture: Fixture, name: str) -> nnx.Module:
    """A fresh network (G_A, G_B, D_A or D_B) holding the fixture's initial weights."""
    cls = SetGenerator if name.startswith("G") else SetDiscriminator
    net = abstract(cls, fixture.config)
    convert.load_reference(net, _reference_state_dict(fixture.arrays, name))
    return net


def to_nhwc(x: np.ndarray) -> jnp.ndarray:
    """NCHW -> NHWC."""
    return jnp.asarray(np.asarray(x).transpose(0, 2, 3, 1))


def to_nchw(x) -> np.ndarray:
    """NHWC -> NCHW."""
    return np.asarray(x).transpose(0, 3, 1, 2)


def split_set(x: np.ndarray, image_channels: int):
    """A reference `cat([img, masks])` NCHW tensor -> image (B,H,W,C), masks (B,K,H,W,1)."""
    return to_nhwc(x[:, :image_channels]), jnp.asarray(x[:, image_channels:])[..., None]


def join_set(img, masks) -> np.ndarray:
    """Image (B,H,W,C) and masks (B,K,H,W,1) -> the reference's NCHW `cat([img, masks])`."""
    return np.concatenate([to_nchw(img), np.asarray(masks)[..., 0]], axis=1)


def _max_error(mode: str, ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        return float("inf")
    diff = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    if mode == "rtol":
        return diff / max(float(np.max(np.abs(theirs))), 1e-12)
    return diff


class _Checker:
    """Collects checks against the fixture, only for keys the fixture has."""

    def __init__(self, fixture: Fixture):
        self.fixture = fixture
        self.checks: list[Check] = []
        self.notes: list[str] = []

    def compare(self, key: str, kind: str, ours, name: str | None = None) -> None:
        if key not in self.fixture.arrays:
            return
        mode, tolerance = self.fixture.tolerances[kind]
        error = _max_error(mode, ours, self.fixture.arrays[key])
        self.checks.append(Check(name or key, kind, mode, tolerance, error))

    def compare_many(self, prefix: str, kind: str, ours: Mapping[str, np.ndarray],
                     skip: frozenset[str] = frozenset(), label: str = "tensors") -> None:
        """One check over every `prefix<key>` array of the fixture (each tensor judged on its own)."""
        keys = [k[len(prefix):] for k in self.fixture.arrays if k.startswith(prefix)]
        keys = [k for k in keys if k not in skip]
        if not keys:
            return
        mode, tolerance = self.fixture.tolerances[kind]
        error = max(_max_error(mode, ours[k], self.fixture.arrays[prefix + k]) if k in ours else float("inf")
                    for k in keys)
        self.checks.append(Check(f"{prefix}* ({len(keys)} {label})", kind, mode, tolerance, error))


def _selected_sets(fixture: Fixture) -> dict[str, tuple]:
    """Per domain: image, the ins_max selected masks and their validity, from the raw slots."""
    sets = {}
    for domain in ("A", "B"):
        raw = jnp.asarray(fixture.arrays[f"input/{domain}_segs_raw"])[..., None]
        masks, valid = instances.select_largest(raw, fixture.ins_max)
        sets[domain] = (to_nhwc(fixture.arrays[f"input/{domain}_img"]), masks, valid)
    return sets


def _input_checks(checker: _Checker, sets: dict[str, tuple]) -> None:
    for domain, (_, masks, _) in sets.items():
        checker.compare(f"input/{domain}_segs_selected", "outputs", np.asarray(masks)[..., 0])
        checker.compare(f"input/{domain}_seg_merged", "outputs", to_nchw(losses.merge_masks(masks)))


def _round_trip_checks(checker: _Checker, fixture: Fixture) -> None:
    """Our state written back in reference layout equals the imported state_dict exactly."""
    for name in ("G_A", "G_B", "D_A", "D_B"):
        ref = _reference_state_dict(fixture.arrays, name)
        ours = convert.to_reference(import_network(fixture, name))
        same_keys = list(ours) == list(ref)
        error = max(float(np.max(np.abs(ours[k] - ref[k]))) for k in ref) if same_keys else float("inf")
        checker.checks.append(Check(f"state_dict round trip {name}", "exact", "atol", 0.0, error))


def _forward_checks(checker: _Checker, fixture: Fixture, sets: dict[str, tuple]) -> None:
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
        after = convert.to_reference(net)
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


def _inference_checks(checker: _Checker, fixture: Fixture, sets: dict[str, tuple]) -> None:
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
    opt = fixture.meta.get("opt", {})
    adam = fixture.meta.get("adam", {})
    height, width = fixture.arrays["input/A_img"].shape[2:]
    betas = adam.get("betas", [opt.get("beta1", 0.5), 0.999])
    weights = losses.LossWeights(**{k: float(opt[k]) for k in
                                    ("lambda_A", "lambda_B", "lambda_idt", "lambda_ctx") if k in opt})
    schedule = training.Schedule(lr=float(adam.get("lr", opt.get("lr", 2e-4))), beta1=float(betas[0]),
                                 beta2=float(betas[1]), eps=float(adam.get("eps", 1e-8)),
                                 niter=int(opt.get("niter", 100)), niter_decay=int(opt.get("niter_decay", 100)))
    return training.StepSpec(fixture.config, height, width, ins_max=fixture.ins_max, ins_per=fixture.ins_per,
                             pool_size=int(opt.get("pool_size", 50)), weights=weights, schedule=schedule)


def _as_reference(spec: training.StepSpec, params: Mapping[str, nnx.State],
                  spectral: Mapping[str, nnx.State]) -> dict[str, dict[str, np.ndarray]]:
    """Network states (or gradients, which have the same layout) as reference state_dicts."""
    g_def, d_def = spec.graphdefs
    out = {}
    for name, state in params.items():
        module = nnx.merge(g_def, state) if name in training.GENERATORS else nnx.merge(d_def, state, spectral[name])
        out[name] = convert.to_reference(module)
    return out


def _stats(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.array([x.sum(), np.abs(x).sum(), np.sqrt(np.square(x).sum()), np.abs(x).max()])


def _final_checks(checker: _Checker, fixture: Fixture, final: Mapping[str, Mapping[str, np.ndarray]],
                  skip: Mapping[str, frozenset[str]]) -> None:
    """Values after the iteration, and the float64 checksums [sum, abs_sum, l2, abs_max] of every
    state tensor, each scaled to a per-element error (n, n, sqrt(n), 1) and judged as Adam updates."""
    mode, tolerance = fixture.tolerances["updated"]
    for name, state in final.items():
        vectors = frozenset(k for k in state if k.endswith(("weight_u", "weight_v")))
        checker.compare_many(f"final/{name}/", "updated", state, skip[name] | vectors)
        checker.compare_many(f"final/{name}/", "outputs", state, skip[name] | (frozenset(state) - vectors),
                             label="spectral-norm vectors")
        keys = [k for k in state if f"final_stats/{name}/{k}" in fixture.arrays and k not in skip[name]]
        if not keys:
            continue
        errors = []
        for k in keys:
            n = state[k].size
            diff = np.abs(_stats(state[k]) - fixture.arrays[f"final_stats/{name}/{k}"])
            errors.append(float(np.max(diff / np.array([n, n, np.sqrt(n), 1.0]))))
        checker.checks.append(Check(f"final_stats/{name}/* ({len(keys)} tensors, per element)",
                                    "updated", mode, tolerance, max(errors)))


# Step-0 generator calls of the reference and the real image each output is compared with by an L1
# term: forward() translates A (G_A: ctx_A) and reconstructs it (G_B: cyc_A), then the same for B;
# backward_G's identity calls are G_B on real A (idt_B) and G_A on real B (idt_A).
_STEP0_L1_TARGETS = {("fwd", 0): "A", ("fwd", 1): "A", ("fwd", 2): "B", ("fwd", 3): "B",
                     ("G", "G_B"): "A", ("G", "G_A"): "B"}
TIE_MARGIN = 2e-5


def _break_l1_ties(fixture: Fixture, images: dict[str, np.ndarray]) -> int:
    """Move real-image pixels that (nearly) tie with a step-0 generator output off the tie, the
    reference's way.

    |out - real| has a kink at out == real, so where the two are closer than float noise between
    frameworks (~1e-6) the sign of the L1 gradient, and from it Adam's ~lr*sign update of small
    gradients, is arbitrary. Such pixels are set TIE_MARGIN (far below every tolerance) away from the
    reference's output on the reference's side. Returns how many values moved.
    """
    c = fixture.config.image_channels
    moved, fwd_index = 0, 0
    for key in sorted(k for k in fixture.arrays if re.match(r"train/call/\d+_s0_(fwd|G)_G_[AB]/out$", k)):
        phase, net = re.search(r"_s0_(fwd|G)_(G_[AB])/", key).groups()
        target = _STEP0_L1_TARGETS[(phase, fwd_index) if phase == "fwd" else (phase, net)]
        fwd_index += phase == "fwd"
        out = fixture.arrays[key][:, :c].transpose(0, 2, 3, 1)
        real = images[target]
        near = np.abs(out - real) < TIE_MARGIN
        real[near] = out[near] - np.where(out[near] >= real[near], 1.0, -1.0) * TIE_MARGIN
        moved += int(near.sum())
    return moved


def _group(tree, index: int):
    """Group `index` of a (G, ...)-leading pytree."""
    return jax.tree.map(lambda x: x[index], tree)


def _training_checks(checker: _Checker, fixture: Fixture) -> None:
    """One training iteration from the initial weights: every sub-step (group) on its own, then the
    whole jitted iteration (final values, checksums and visuals)."""
    if "train/step0/real_A_img_sng" not in fixture.arrays:
        return
    spec = _train_spec(fixture)
    skip = {n: frozenset(fixture.meta.get("norm_cancelled_biases", {}).get(n, [])) for n in
            training.GENERATORS + training.DISCRIMINATORS}
    params, spectral = training.split_networks({n: import_network(fixture, n) for n in skip})
    state = training.state_from_params(spec, params, spectral)
    images = {d: np.array(to_nhwc(fixture.arrays[f"input/{d}_img"])) for d in ("A", "B")}
    moved = _break_l1_ties(fixture, images)
    batch = {}
    for d in ("A", "B"):
        raw = jnp.asarray(fixture.arrays[f"input/{d}_segs_raw"])[..., None]
        batch.update({f"img_{d}": jnp.asarray(images[d]), f"masks_{d}": raw, f"valid_{d}": instances.mask_valid(raw)})
    checker.notes.append(f"training checks: {moved} input pixel value(s) moved {TIE_MARGIN:g} off an L1 tie "
                         "with a step-0 generator output (sign of the L1 gradient undetermined there)")
    real = training.select_sets(spec, batch)
    masks, valid, _ = training.grouped_masks(spec, real)
    carry = training.initial_carry(spec, state, real)
    group_step = jax.jit(training.group_step, static_argnums=0)
    steps = fixture.meta.get("train_steps", [])
    for i in range(spec.n_groups):
        root = f"train/step{i}/"
        for src in ("A", "B"):
            checker.compare(f"{root}real_{src}_img_sng", "outputs", to_nchw(carry.img[src]))
            checker.compare(f"{root}real_{src}_seg_sng", "outputs", np.asarray(masks[src][i])[..., 0])
        key = jax.random.fold_in(jax.random.key(0), i)
        carry, out = group_step(spec, carry, (_group(masks, i), _group(valid, i), i), real, key)
        for d, dst in (("A", "B"), ("B", "A")):
            o = out.outputs[d]
            checker.compare(f"{root}fake_{dst}_mul", "outputs", join_set(o["fake_img"], o["set_masks"]))
        if i < len(steps):
            for name, value in out.losses.items():
                if f"loss_{name}" in steps[i]:
                    theirs = steps[i][f"loss_{name}"]
                    error = abs(float(value) - theirs) / max(abs(theirs), 1e-12)
                    mode, tol = fixture.tolerances["losses"]
                    checker.checks.append(Check(f"{root}loss_{name}", "losses", mode, tol, error))
        grads = _as_reference(spec, out.grads, carry.state.spectral)
        after = _as_reference(spec, carry.state.params, carry.state.spectral)
        for opt, nets in (("opt_G", training.GENERATORS), ("opt_D", training.DISCRIMINATORS)):
            for net in nets:
                checker.compare_many(f"{root}{opt}/grad/{net}/", "gradients", grads[net], skip[net])
                checker.compare_many(f"{root}{opt}/after/{net}/", "updated", after[net], skip[net])

    iteration = jax.jit(training.train_iteration, static_argnums=0)
    final_state, _, visuals = iteration(spec, state, batch)
    _final_checks(checker, fixture, _as_reference(spec, final_state.params, final_state.spectral), skip)
    for d, (src, dst) in (("A", ("A", "B")), ("B", ("B", "A"))):
        v = visuals[d]
        checker.compare(f"train/visual/fake_{dst}_img", "outputs", to_nchw(v.fake_img))
        checker.compare(f"train/visual/rec_{src}_img", "outputs", to_nchw(v.rec_img))
        checker.compare(f"train/visual/fake_{dst}_seg", "outputs", to_nchw(v.fake_union))
        checker.compare(f"train/visual/rec_{src}_seg", "outputs",
                        _stale_union(v.rec_masks, real[src].valid, spec.ins_per),
                        name=f"train/visual/rec_{src}_seg (reference's stale re-append of skipped groups)")


def run_parity(path: str | Path, notes: list[str] | None = None) -> list[Check]:
    """Every check of the fixture that this version of the library covers (remarks go to `notes`)."""
    fixture = load_fixture(path)
    checker = _Checker(fixture)
    sets = _selected_sets(fixture)
    _input_checks(checker, sets)
    _round_trip_checks(checker, fixture)
    _forward_checks(checker, fixture, sets)
    _inference_checks(checker, fixture, sets)
    _training_checks(checker, fixture)
    if notes is not None:
        notes.extend(checker.notes)
    return checker.checks


def format_report(checks: list[Check], notes: list[str] | tuple[str, ...] = ()) -> str:
    """A table of checks, the notes, and the closing `parity: P/N checks within tolerance` line."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'check':<{width}}  {'kind':<9} {'max error':>11}  {'tolerance':>14}  result",
             "-" * (width + 50)]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {c.kind:<9} {c.error:>11.3e}  {c.mode} {c.tolerance:>9.1e}  "
                     f"{'ok' if c.passed else 'FAIL'}")
    by_kind: dict[str, float] = {}
    for c in checks:
        by_kind[c.kind] = max(by_kind.get(c.kind, 0.0), c.error)
    lines.append("largest error per kind: " + ", ".join(f"{k} {v:.3e}" for k, v in by_kind.items()))
    lines.extend(f"note: {note}" for note in notes)
    passed = sum(c.passed for c in checks)
    lines.append(f"parity: {passed}/{len(checks)} checks within tolerance")
    return "\n".join(lines)
