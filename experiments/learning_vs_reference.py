"""Does ours learn as the reference learns? InstaGAN, both sides on the same images in the same order.

    python experiments/learning_vs_reference.py [--config discs2squares] [--steps 1500] [--seeds 0 1]
        [--log-every 50] [--eval-every 250] [--num 100] [--set key=value ...]
        [--out-dir docs/results/learning_vs_reference] [--only {ours,reference}]

For each seed, the PyTorch reference (../shared/reference/instagan-pytorch, imported unmodified, torch on
the CPU) and ours train from scratch on the config's task with the same sizes, losses and optimiser, at
the reference's limits: batch 1 (its set generator sums over the batch), 9 residual blocks (its
`define_G` fixes them) and its stride-2 transposed-conv upsampling (`model.upsample=transpose`). Both read the same batches, from our loader seeded by the seed; each side's
networks are initialised from the seed by its own framework. Logged:

- the losses (the reference's `get_current_losses` names), averaged over each `--log-every` iterations;
- every `--eval-every` iterations: the discriminators' held-out AUC (D_A: real B over real A; D_B: real A
  over real B), and the generators' translations scored by `instagan eval`'s code on `--num` held-out
  images per domain (the reference's generators are read into ours, `methods.instagan.reference.load_reference`): the share
  of objects of the target shape from the translated masks and from the images, and the background
  PSNR outside the input and translated masks;
- each side's training wall time (evaluations and the first iteration, in which ours compiles, excluded;
  the first iteration's time is kept apart).

Writes `curves.json` (every number), `overlay.png` (both sides' curves, one line per seed) and prints a
table: each figure at each evaluation, per side as the seeds' values, and whether ours lies inside the
reference's seed range. `--only` runs one side (e.g. without torch) and merges into an existing curves.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from learnability_probe import auc, held_out  # noqa: E402
from reference_import import reference_input, reference_instagan, reference_missing  # noqa: E402

from instagan_jax import loop, methods  # noqa: E402
from instagan_jax.config import Config  # noqa: E402
from instagan_jax.eval import splits  # noqa: E402
from instagan_jax.methods import load_config  # noqa: E402
from instagan_jax.nn.build import abstract, apply  # noqa: E402
from instagan_jax.targets import TARGETS  # noqa: E402
from instagan_jax.trained import TrainedModel  # noqa: E402

REFERENCE_LIMITS = ("train.batch_size=1", "model.n_blocks=9", "model.upsample=transpose")
LOSSES = ("G_A", "G_B", "D_A", "D_B", "cyc_A", "cyc_B", "idt_A", "idt_B", "ctx_A", "ctx_B")
QUALITY = {  # figure -> (direction, path in instagan eval's results)
    "AtoB masks on target": ("AtoB", ("shape", "translated", "target_fraction")),
    "BtoA masks on target": ("BtoA", ("shape", "translated", "target_fraction")),
    "AtoB images on target": ("AtoB", ("image_shape", "translated", "target_fraction")),
    "BtoA images on target": ("BtoA", ("image_shape", "translated", "target_fraction")),
    "AtoB background PSNR": ("AtoB", ("background", "psnr_db")),
    "BtoA background PSNR": ("BtoA", ("background", "psnr_db")),
}
SIDES = ("ours", "reference")


def reference_arguments(config: Config) -> dict[str, object]:
    """The reference's command-line options for a config (sizes, losses, optimiser)."""
    m, t, w, d = config.model, config.train, config.loss, config.data
    height, width = d.crop_size
    load_h, load_w = d.load_size or (d.options.get("height", height), d.options.get("width", width))
    return {"ngf": m.ngf, "ndf": m.ndf, "batch_size": 1, "ins_max": t.ins_max, "ins_per": t.ins_per,
            "loadSizeH": load_h, "loadSizeW": load_w, "fineSizeH": height, "fineSizeW": width,
            "lr": t.lr, "beta1": t.beta1, "pool_size": t.pool_size, "niter": t.niter, "niter_decay": t.niter_decay,
            "lambda_A": w.lambda_A, "lambda_B": w.lambda_B, "lambda_idt": w.lambda_idt, "lambda_ctx": w.lambda_ctx}


class OursRun:
    """Our InstaGAN trained by the training loop's compiled step."""

    def __init__(self, config: Config, seed: int, iters_per_epoch: float):
        self.config, self.method = config, methods.get("instagan")
        self.spec = self.method.make_spec(config, iters_per_epoch)
        placement = loop.make_placement()
        self.state = jax.device_put(self.method.init_state(self.spec, seed), placement.replicated)
        self.placement = placement
        self.step_fn = loop.compiled_step(self.method, self.spec, placement)

    def train(self, batch: dict) -> dict[str, float]:
        global_batch = loop.to_global(batch, loop.BATCH_KEYS["sets"], self.placement.sharded)
        self.state, metrics, _ = self.step_fn(self.state, global_batch)
        return self.method.summarize(jax.device_get(metrics))

    def networks(self) -> dict:
        return self.method.modules(self.spec, self.state)

    def scores(self, name: str, x: dict, side: str) -> np.ndarray:
        module = self.networks()[name]
        return np.asarray(apply(module, x[side], x[f"{side}_masks"], x[f"{side}_valid"])).mean(axis=(1, 2, 3))


class ReferenceRun:
    """The reference's InstaGAN, one `optimize_parameters` per batch and, as its train.py does, one
    `update_learning_rate` after each epoch (of our loader's length)."""

    def __init__(self, config: Config, seed: int, iters_per_epoch: float):
        import torch

        self.torch, self.config, self.iters_per_epoch = torch, config, iters_per_epoch
        self.model = reference_instagan(reference_arguments(config), seed)
        self.iterations = 0

    def train(self, batch: dict) -> dict[str, float]:
        self.model.set_input(reference_input(batch))
        self.model.optimize_parameters()
        self.iterations += 1
        if self.iterations // self.iters_per_epoch > (self.iterations - 1) // self.iters_per_epoch:  # epoch ended
            with contextlib.redirect_stdout(io.StringIO()):
                self.model.update_learning_rate()
        with warnings.catch_warnings():  # its float() of a tensor that requires grad
            warnings.simplefilter("ignore", UserWarning)
            return {k: float(v) for k, v in self.model.get_current_losses().items()}

    def networks(self) -> dict:
        """The reference's generators read into ours."""
        from instagan_jax.methods.instagan.networks import SetGenerator
        from instagan_jax.methods.instagan.reference import load_reference

        out = {}
        for name in ("G_A", "G_B"):
            network = getattr(self.model, f"net{name}")
            state_dict = {k: v.detach().cpu().numpy() for k, v in network.state_dict().items()}
            out[name] = abstract(SetGenerator, self.config.model)
            load_reference(out[name], state_dict)
        return out

    def scores(self, name: str, x: dict, side: str) -> np.ndarray:
        """The discriminator's scores, its spectral-norm vectors (which move at every call) put back after."""
        net = getattr(self.model, f"net{name}")
        vectors = {k: v.detach().clone() for k, v in net.state_dict().items() if k.endswith(("weight_u", "weight_v"))}
        masks = np.where(x[f"{side}_valid"][:, :, None, None], x[f"{side}_masks"][..., 0], -1.0)
        inputs = np.concatenate([x[side].transpose(0, 3, 1, 2), masks], 1).astype(np.float32)
        with self.torch.no_grad():
            scores = net(self.torch.from_numpy(inputs)).mean(dim=(1, 2, 3)).numpy()
        net.load_state_dict(vectors, strict=False)
        return scores


def evaluation(run, config: Config, held: dict, request: methods.EvalRequest) -> dict[str, float]:
    """The discriminators' held-out AUCs and the generators' translation figures."""
    figures = {"D_A AUC": auc(run.scores("D_A", held, "pos"), run.scores("D_A", held, "neg")),
               "D_B AUC": auc(run.scores("D_B", held, "neg"), run.scores("D_B", held, "pos"))}
    model = TrainedModel(config, 0, Path("-"), run.networks())
    results = methods.get(config.method).evaluate(model, request)["directions"]
    for name, (direction, path) in QUALITY.items():
        value = results[direction]
        for key in path:
            value = value[key]
        figures[name] = None if value is None else float(value)
    return figures


def train_side(side: str, config: Config, seed: int, args, held: dict, request: methods.EvalRequest) -> dict:
    """One side's curves for one seed."""
    run_config = load_config(args.config, [*args.set, *args.limits, f"train.seed={seed}"])
    loader = loop.make_loader(run_config)
    run = (OursRun if side == "ours" else ReferenceRun)(run_config, seed, loader.batches_per_epoch)
    curves = {"losses": [], "evals": []}
    window, train_seconds = [], 0.0
    for step in range(1, args.steps + 1):
        batch = next(loader)
        start = time.perf_counter()
        window.append(run.train(batch))
        if step == 1:  # ours compiles here: timed apart
            curves["first_iteration_seconds"] = round(time.perf_counter() - start, 1)
        else:
            train_seconds += time.perf_counter() - start
        if step % args.log_every == 0:
            curves["losses"].append({"step": step, **{k: float(np.mean([w[k] for w in window])) for k in LOSSES}})
            window = []
        if step % args.eval_every == 0 or step == args.steps:
            figures = evaluation(run, run_config, held, request)
            curves["evals"].append({"step": step, "train_seconds": round(train_seconds, 1), **figures})
            print(f"{side:<9} seed {seed} step {step:>5} ({train_seconds:7.1f} s): "
                  + "  ".join(f"{k} {v:.3f}" for k, v in figures.items() if v is not None), flush=True)
    loader.close()
    return curves


# ------------------------------------------------------------------------- reporting

def inside(values: list[float], spread: list[float]) -> bool:
    return bool(spread) and all(min(spread) <= v <= max(spread) for v in values)


def seed_values(runs: dict, step: int, name: str) -> list[float]:
    """A figure's values at one evaluation step, one per seed."""
    return [e[name] for run in runs.values() for e in run["evals"] if e["step"] == step and e[name] is not None]


def table(curves: dict) -> list[str]:
    """Each evaluated figure at each evaluation step: ours' and the reference's seed values, and whether
    ours lies inside the reference's seed range."""
    sides = {s: curves[s] for s in SIDES if curves.get(s)}
    evals = [e for runs in sides.values() for run in runs.values() for e in run["evals"]]
    steps = sorted({e["step"] for e in evals})
    names = [k for k in evals[0] if k not in ("step", "train_seconds")]
    lines = [f"{'step':>5}  {'figure':<24} {'ours (seeds)':<26} {'reference (seeds)':<26} inside"]
    for step in steps:
        for name in names:
            values = {s: seed_values(runs, step, name) for s, runs in sides.items()}
            cells = {s: " ".join(f"{v:.3f}" for v in values.get(s, [])) for s in SIDES}
            verdict = "yes" if inside(values.get("ours", []), values.get("reference", [])) else "no"
            if len(sides) < 2:
                verdict = "-"
            lines.append(f"{step:>5}  {name:<24} {cells['ours']:<26} {cells['reference']:<26} {verdict}")
    return lines


def time_to(curves: dict, thresholds: dict[str, float]) -> dict[str, list]:
    """Per side and seed, the first evaluation at which every figure reaches its threshold: (step, seconds)."""
    out = {}
    for side in SIDES:
        for seed, run in curves.get(side, {}).items():
            hit = next((e for e in run["evals"] if all((e[n] or 0) >= t for n, t in thresholds.items())), None)
            out.setdefault(side, []).append((seed, None if hit is None else (hit["step"], hit["train_seconds"])))
    return out


def check_thresholds(config_name: str) -> dict[str, float]:
    """learning_check's targets for the config (instagan_jax/targets.py) as thresholds on the figures above."""
    by_path = {(direction, path): name for name, (direction, path) in QUALITY.items()}
    out = {}
    for figure in TARGETS.get(config_name, ()):
        name = by_path.get((figure.path[1], figure.path[2:]))
        if figure.threshold is not None:
            if name is None:
                raise SystemExit(f"learning_check's figure {figure.label!r} is not among the figures evaluated here")
            out[name] = figure.threshold
    return out


def plot(curves: dict, path: Path) -> None:
    """Both sides' curves, one line per seed: losses (top rows) and evaluations (bottom rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evals = [k for k in ("D_A AUC", "D_B AUC", *QUALITY)]
    panels = [("losses", k) for k in LOSSES] + [("evals", k) for k in evals]
    cols = 6
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    colours = {"ours": "tab:blue", "reference": "tab:orange"}
    for ax, (section, name) in zip(axes.flat, panels):
        for side in SIDES:
            for i, (seed, run) in enumerate(sorted(curves.get(side, {}).items())):
                points = [(e["step"], e[name]) for e in run[section] if e.get(name) is not None]
                if points:
                    ax.plot(*zip(*points), color=colours[side], alpha=0.85, linestyle="-" if i % 2 == 0 else "--",
                            label=f"{side} seed {seed}")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"{curves['config']}: ours (blue) and the PyTorch reference (orange), same batches", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="discs2squares")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--log-every", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--num", type=int, default=100, help="held-out images per domain (default 100)")
    parser.add_argument("--only", choices=SIDES, help="run one side; merge into an existing curves.json")
    parser.add_argument("--as-shipped", action="store_true",
                        help="with --only ours: the config as shipped (its batch, blocks and upsampling), not at "
                             "the reference's limits")
    parser.add_argument("--report", action="store_true", help="train nothing: the table and plot of curves.json")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "results" / "learning_vs_reference")
    args = parser.parse_args()
    if args.as_shipped and args.only != "ours":
        parser.error("--as-shipped is for --only ours: the reference runs at its limits only")
    args.limits = () if args.as_shipped else REFERENCE_LIMITS
    config = load_config(args.config, [*args.set, *args.limits])
    if config.method != "instagan":
        parser.error(f"--config {args.config} is a {config.method} config: this script compares InstaGAN")
    if min(args.steps, args.log_every, args.eval_every, args.num) < 1:
        parser.error("--steps, --log-every, --eval-every and --num must be >= 1")
    if args.report:
        report(json.loads((args.out_dir / "curves.json").read_text()), args.out_dir)
        return
    sides = [args.only] if args.only else list(SIDES)
    missing = reference_missing() if "reference" in sides else None
    if missing:
        parser.error(f"the reference cannot run: {missing} (or pass --only ours)")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    path = args.out_dir / "curves.json"
    curves = json.loads(path.read_text()) if args.only and path.exists() else {}
    curves.update({"config": config.name, "overrides": [*args.set, *args.limits], "steps": args.steps,
                   "held_out_per_domain": args.num})
    held = held_out(config, "sets", args.num)
    data_config, split = splits.held_out_data(config.data, set())
    request = methods.EvalRequest(run=args.out_dir, data=data_config, split=split, given=frozenset(), num=args.num,
                                  batch_size=25, progress=False)
    print(f"{config.name}: {args.steps} iterations per run, seeds {args.seeds}, sides {sides}; eval on {split}")
    for side in sides:
        curves[side] = {}
        for seed in args.seeds:
            curves[side][str(seed)] = train_side(side, config, seed, args, held, request)
            path.write_text(json.dumps(curves, indent=1) + "\n")
    report(curves, args.out_dir)


def report(curves: dict, out_dir: Path) -> None:
    """Print the table and the iterations to quality; draw the overlay."""
    plot(curves, out_dir / "overlay.png")
    print("\n".join(table(curves)))
    masks = {"AtoB masks on target": 0.9, "BtoA masks on target": 0.9}
    passing = check_thresholds(curves["config"])
    for what, thresholds in (("with >= 90% of the masks on target both ways", masks),
                             ("passing learning_check's targets", passing)):
        for side, hits in time_to(curves, thresholds).items():
            print(f"{side}: first evaluation {what} (step, train seconds): "
                  + ", ".join(f"seed {seed} {hit or 'none'}" for seed, hit in hits))
    print(f"wrote {out_dir / 'curves.json'} and {out_dir / 'overlay.png'}")


if __name__ == "__main__":
    main()
