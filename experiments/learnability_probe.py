"""Can a method's discriminator learn its task's domain difference? A discriminator trained alone.

    python experiments/learnability_probe.py --config shapes_instagan [--set key=value ...]
        [--steps 1000] [--every 100] [--num 200] [--seed 0] [--no-reference] [--out probe.json]

A fresh discriminator of the config's method (its architecture, loss and optimiser) is trained with
no generator on the task's real data: for InstaGAN and CycleGAN, D_A on real B (target 1) against
real A (target 0); for pix2pix, D on (input, target) pairs against (input, input) pairs (an
untranslated output); for LOMIT, D's attribute head on the attribute labels. Every `--every` steps
it scores held-out data (the shapes seed + 1000, centre crops) and reports the AUC: the chance that
a positive example scores above a negative one (0.5 = cannot tell, 1 = always can); for LOMIT, one
AUC per attribute. A task is used for evidence only when this reaches >= 0.9 within ~1000 steps.

With torch installed, the PyTorch reference's own discriminator (`networks.define_D` of
../shared/reference/instagan-pytorch, imported unmodified) is trained beside ours on the same
batches in the same order, with the same loss and Adam settings (LOMIT has no reference).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from reference_import import REFERENCE_DIR, import_reference, reference_missing  # noqa: E402

from instagan_jax import loop, methods  # noqa: E402
from instagan_jax.data.sources import open_data  # noqa: E402
from instagan_jax.data.transforms import TransformConfig, transform_record  # noqa: E402
from instagan_jax.evaluate import held_out_data  # noqa: E402
from instagan_jax.methods import load_config  # noqa: E402
from instagan_jax.nn.instances import select_largest  # noqa: E402

# method -> (discriminator network, reference netD and norm, input channels, loss)
PROBED = {
    "instagan": ("D_A", "set", "instance", 3, "lsgan"),
    "cyclegan": ("D_A", "basic", "instance", 3, "lsgan"),
    "pix2pix": ("D", "basic", "batch", 6, "bce"),
    "lomit": ("D", None, None, None, "attributes"),
}
EVAL_CHUNK = 50


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half."""
    diff = np.asarray(positive)[:, None] - np.asarray(negative)[None, :]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


# ------------------------------------------------------------------------- examples of each kind

def as_examples(batch: dict, kind: str) -> dict[str, np.ndarray]:
    """A loader batch as the probe's (positive, negative) inputs, NHWC float32."""
    if kind == "sets":
        return {"pos": batch["img_B"], "pos_masks": batch["masks_B"], "pos_valid": batch["valid_B"],
                "neg": batch["img_A"], "neg_masks": batch["masks_A"], "neg_valid": batch["valid_A"]}
    if kind == "images":
        return {"pos": batch["img_B"], "neg": batch["img_A"]}
    if kind == "paired":
        return {"pos": np.concatenate([batch["img_A"], batch["img_B"]], -1),
                "neg": np.concatenate([batch["img_A"], batch["img_A"]], -1)}
    return {"img": batch["img"], "labels": np.asarray(batch["labels"], np.float32)}


def held_out(config, kind: str, num: int) -> dict[str, np.ndarray]:
    """`num` held-out examples (the evaluation split of `instagan eval`), centre-cropped, unflipped."""
    data_config, _ = held_out_data(config.data, set())
    d, t = data_config, config.train
    transform = TransformConfig(load_size=d.load_size, crop_size=d.crop_size, flip=False,
                                ins_max=t.ins_max if kind == "sets" else 0)
    if kind == "attributes":
        from instagan_jax.data.attributes import transform_example

        source = open_data(d, "attributes")
        examples = [transform_example(source[i], transform, None) for i in range(min(num, len(source)))]
        return {"img": np.stack([e["img"] for e in examples]),
                "labels": np.stack([np.asarray(e["labels"], np.float32) for e in examples])}
    if kind == "paired":
        pairs = open_data(d, "paired")
        chosen = [[transform_record(r, transform) for r in pairs[i]] for i in range(min(num, len(pairs)))]
        batch = {"img_A": np.stack([a["img"] for a, _ in chosen]), "img_B": np.stack([b["img"] for _, b in chosen])}
        return as_examples(batch, kind)
    sources = open_data(d)
    batch = {}
    for domain, source in zip("AB", sources):
        records = [transform_record(source[i], transform) for i in range(min(num, len(source)))]
        batch[f"img_{domain}"] = np.stack([r["img"] for r in records])
        if kind == "sets":
            masks, valid = select_largest(np.stack([r["masks"] for r in records]), transform.ins_max)
            batch[f"masks_{domain}"], batch[f"valid_{domain}"] = np.asarray(masks), np.asarray(valid)
    return as_examples(batch, kind)


def chunks(examples: dict[str, np.ndarray], size: int):
    count = len(next(iter(examples.values())))
    for start in range(0, count, size):
        yield {k: v[start:start + size] for k, v in examples.items()}


# ------------------------------------------------------------------------- ours

def _ours_scores(module, x: dict, side: str, kind: str) -> jax.Array:
    """Per-sample mean score of `side` ('pos' | 'neg'), or attribute logits (B, C)."""
    if kind == "sets":
        return jnp.mean(module(x[side], x[f"{side}_masks"], x[f"{side}_valid"]), axis=(1, 2, 3))
    if kind == "paired":
        return jnp.mean(module(x[side], True), axis=(1, 2, 3))
    if kind == "attributes":
        return module(x["img"])[1]
    return jnp.mean(module(x[side]), axis=(1, 2, 3))


def _loss(scores: dict, loss: str, labels=None) -> jax.Array:
    if loss == "lsgan":
        return 0.5 * (jnp.mean((scores["pos"] - 1.0) ** 2) + jnp.mean(scores["neg"] ** 2))
    if loss == "bce":
        floor = -100.0  # nn.BCELoss's clamp of log
        return -0.5 * (jnp.mean(jnp.maximum(jnp.log(scores["pos"]), floor))
                       + jnp.mean(jnp.maximum(jnp.log(1.0 - scores["neg"]), floor)))
    return jnp.mean(optax.sigmoid_binary_cross_entropy(scores["attr"], labels))


class Ours:
    """Our discriminator of the method, trained alone with Adam (the config's lr and betas)."""

    def __init__(self, config, seed: int):
        method = methods.get(config.method)
        self.kind = method.data
        name, _, _, _, self.loss = PROBED[config.method]
        spec = method.make_spec(config, 1000.0)
        module = method.modules(spec, method.init_state(spec, seed))[name]
        self.graphdef, self.params, self.rest = nnx.split(module, nnx.Param, ...)
        t = config.train
        self.optimizer = optax.adam(t.lr, b1=t.beta1, b2=t.beta2, eps=t.eps)
        self.opt_state = self.optimizer.init(self.params)
        self._step = jax.jit(self._train_step)
        self._score = jax.jit(self._eval_scores)

    def _train_step(self, params, rest, opt_state, x):
        def loss_fn(p):
            module = nnx.merge(self.graphdef, p, rest, copy=True)
            if self.kind == "attributes":
                value = _loss({"attr": _ours_scores(module, x, "", self.kind)}, self.loss, x["labels"])
            else:
                value = _loss({s: _ours_scores(module, x, s, self.kind) for s in ("pos", "neg")}, self.loss)
            return value, nnx.split(module, nnx.Param, ...)[2]

        (value, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, value

    def train(self, x: dict) -> float:
        self.params, self.rest, self.opt_state, value = self._step(self.params, self.rest, self.opt_state, x)
        return float(value)

    def _eval_scores(self, params, rest, x):
        module = nnx.merge(self.graphdef, params, rest, copy=True)
        if self.kind == "paired":
            module.eval()
            return {s: jnp.mean(module(x[s], False), axis=(1, 2, 3)) for s in ("pos", "neg")}
        if self.kind == "attributes":
            return {"attr": _ours_scores(module, x, "", self.kind)}
        return {s: _ours_scores(module, x, s, self.kind) for s in ("pos", "neg")}

    def scores(self, examples: dict) -> dict[str, np.ndarray]:
        parts = [jax.device_get(self._score(self.params, self.rest, x)) for x in chunks(examples, EVAL_CHUNK)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ------------------------------------------------------------------------- the reference

class Reference:
    """The reference's `define_D` for the method, trained alone as `Ours` (torch, CPU)."""

    def __init__(self, config, seed: int):
        import torch

        networks = import_reference().networks
        _, net_d, norm, channels, self.loss = PROBED[config.method]
        self.kind = methods.get(config.method).data
        torch.manual_seed(seed)
        self.torch = torch
        self.net = networks.define_D(channels, config.model.ndf, net_d, 3, norm, self.loss == "bce", "normal",
                                     0.02, [])
        t = config.train
        self.optimizer = torch.optim.Adam([p for p in self.net.parameters() if p.requires_grad], lr=t.lr,
                                          betas=(t.beta1, t.beta2), eps=t.eps)

    def _input(self, x: dict, side: str):
        """NCHW tensor; for sets, image then the mask slots (invalid ones all -1, as the reference's loader)."""
        arrays = x[side]
        if self.kind == "sets":
            masks = np.where(x[f"{side}_valid"][:, :, None, None], x[f"{side}_masks"][..., 0], -1.0)
            return self.torch.from_numpy(np.concatenate([arrays.transpose(0, 3, 1, 2), masks], 1).astype(np.float32))
        return self.torch.from_numpy(np.ascontiguousarray(arrays.transpose(0, 3, 1, 2), np.float32))

    def _loss(self, pos, neg):
        torch = self.torch
        if self.loss == "lsgan":
            return 0.5 * (torch.mean((pos - 1.0) ** 2) + torch.mean(neg**2))
        floor = -100.0  # nn.BCELoss's clamp of log
        return -0.5 * (torch.mean(torch.clamp(torch.log(pos), min=floor))
                       + torch.mean(torch.clamp(torch.log(1 - neg), min=floor)))

    def train(self, x: dict) -> float:
        self.net.train()
        self.optimizer.zero_grad()
        loss = self._loss(self.net(self._input(x, "pos")), self.net(self._input(x, "neg")))
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def scores(self, examples: dict) -> dict[str, np.ndarray]:
        if self.kind == "paired":
            self.net.eval()
        out = {"pos": [], "neg": []}
        with self.torch.no_grad():
            for x in chunks(examples, EVAL_CHUNK):
                for side in out:
                    out[side].append(self.net(self._input(x, side)).mean(dim=(1, 2, 3)).numpy())
        self.net.train()
        return {k: np.concatenate(v) for k, v in out.items()}


# ------------------------------------------------------------------------- the probe

def aucs(scores: dict, examples: dict, attributes: tuple[str, ...]) -> dict[str, float]:
    """AUC of positives over negatives, or of each attribute's logit (label 1 over label 0)."""
    if "attr" not in scores:
        return {"AUC": auc(scores["pos"], scores["neg"])}
    labels = examples["labels"] > 0.5
    return {f"AUC {name}": auc(scores["attr"][labels[:, i], i], scores["attr"][~labels[:, i], i])
            for i, name in enumerate(attributes)}


def attribute_names(config) -> tuple[str, ...]:
    if methods.get(config.method).data != "attributes":
        return ()
    return tuple(open_data(config.data, "attributes").attributes)


def probe(config, *, steps: int, every: int, num: int, seed: int, with_reference: bool) -> dict:
    """Train ours (and the reference) alone; the held-out AUCs and mean losses every `every` steps."""
    kind = methods.get(config.method).data
    loader = loop.make_loader(config)
    held = held_out(config, kind, num)
    names = attribute_names(config)
    sides = {"ours": Ours(config, seed)}
    if with_reference:
        sides["reference"] = Reference(config, seed)
    rows, losses, start = [], {s: [] for s in sides}, time.perf_counter()
    for step in range(1, steps + 1):
        x = as_examples(next(loader), kind)
        for name, side in sides.items():
            losses[name].append(side.train(x))
        if step % every == 0 or step == steps:
            row = {"step": step, "seconds": round(time.perf_counter() - start, 1)}
            for name, side in sides.items():
                row[name] = {"loss": float(np.mean(losses[name][-every:])), **aucs(side.scores(held), held, names)}
            rows.append(row)
            print(format_row(row), flush=True)
    loader.close()
    return {"config": config.to_dict(), "steps": steps, "held_out": num, "seed": seed, "rows": rows}


def format_row(row: dict) -> str:
    cells = [f"step {row['step']:>5}", f"{row['seconds']:>7.1f} s"]
    for name in ("ours", "reference"):
        if name in row:
            figures = "  ".join(f"{k} {v:.3f}" for k, v in row[name].items())
            cells.append(f"{name}: {figures}")
    return "  |  ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--num", type=int, default=200, help="held-out examples per side (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation seed of both discriminators")
    parser.add_argument("--no-reference", action="store_true", help="ours alone, even with torch installed")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    if args.steps < 1 or args.every < 1 or args.num < 2:
        parser.error("--steps and --every must be >= 1, --num >= 2")
    missing = "no reference for LOMIT" if PROBED[config.method][1] is None else reference_missing()
    with_reference = not args.no_reference and missing is None
    if not args.no_reference and missing:
        print(f"reference not trained: {missing}")
    print(f"probe: {config.name} ({config.method}), {args.steps} steps at batch {config.train.batch_size}, "
          f"{args.num} held-out examples per side, reference {'beside' if with_reference else 'absent'} "
          f"({REFERENCE_DIR if with_reference else '-'})")
    result = probe(config, steps=args.steps, every=args.every, num=args.num, seed=args.seed,
                   with_reference=with_reference)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
