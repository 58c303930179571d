"""Run by test_data_parallel.py in a subprocess with 8 fake CPU devices: three iterations on an
8-device mesh and on a 1-device mesh must give the same state. Prints the largest differences.
`multidevice_check.py lomit` does the same for LOMIT (four iterations, n_critic 2: two generator updates).

The comparison runs in float64 (JAX_ENABLE_X64=1, model.dtype float64). In float32 the two runs differ
by more than round-off, although both are right: the networks have kinks (ReLU gates, |x| in the L1
losses, the clamp of the mask union), and at a different per-device batch size XLA rounds a few
pre-activations that lie within ~1e-6 of a kink to the other side, which drops or flips that element's
gradient (a 3-5% change of some generator gradients was traced to one ReLU input of 8.8e-7 vs -8.8e-8).
Adam then turns the differing signs of tiny gradients into +-lr steps. In float64 no kink is that
close, and the runs agree to ~1e-12."""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from instagan_jax import loop, methods
from instagan_jax.methods.instagan import step as training
from instagan_jax.methods.instagan.config import InstaganTrain
from instagan_jax.methods.lomit.config import LomitLoss, LomitModel, LomitTrain
from instagan_jax.nn.build import ResnetModel

SIZE, BATCH = 32, 8


def batches(n: int):
    rng = np.random.default_rng(0)
    for _ in range(n):
        batch = {}
        for d in ("A", "B"):
            masks = -np.ones((BATCH, 3, SIZE, SIZE, 1), np.float32)
            for b in range(BATCH):
                for k in range(int(rng.integers(0, 4))):  # 0 to 3 instances: some samples skip groups
                    top, left = rng.integers(0, SIZE - 12, 2)
                    masks[b, k, top:top + 4 + 2 * k, left:left + 6 + 2 * k] = 1.0
            batch[f"img_{d}"] = rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
            batch[f"masks_{d}"] = masks
            batch[f"valid_{d}"] = np.any(masks > -1, axis=(2, 3, 4))
        yield batch


def run(placement: loop.Placement, spec: training.StepSpec):
    """Final state, first iteration's metrics and last iteration's metrics of three iterations."""
    state = jax.device_put(training.init_state(spec, seed=0), placement.replicated)
    iteration = loop.compiled_step(methods.get("instagan"), spec, placement)
    history = []
    for batch in batches(3):
        global_batch = loop.to_global(batch, loop.BATCH_KEYS["sets"], placement.sharded)
        assert len(global_batch["img_A"].sharding.device_set) == placement.mesh.size
        state, metrics, _ = iteration(state, global_batch)
        history.append(jax.device_get(metrics))
    return jax.device_get(state), history[0], history[-1]


def lomit_batches(n: int):
    rng = np.random.default_rng(0)
    for _ in range(n):
        yield {"img": rng.uniform(-1, 1, (BATCH, SIZE, SIZE, 3)).astype(np.float32),
               "labels": rng.integers(0, 2, (BATCH, 2)).astype(np.float32)}


def lomit_main() -> int:
    """LOMIT on 8 devices and on 1: the whole state after four iterations, and every loss term."""
    from instagan_jax.methods.lomit import step as lomit

    spec = lomit.Spec(LomitModel(ngf=4, ndf=4, n_blocks=1, mask_layers=1, d_layers=4, style_dim=3, dtype="float64"),
                      LomitLoss(), LomitTrain(batch_size=BATCH, n_critic=2), SIZE, SIZE)

    def run_lomit(placement: loop.Placement):
        state = jax.device_put(lomit.init_state(spec, seed=0), placement.replicated)
        iteration = loop.compiled_step(methods.get("lomit"), spec, placement)
        history = []
        for batch in lomit_batches(4):
            state, metrics, _ = iteration(state, loop.to_global(batch, loop.BATCH_KEYS["attributes"], placement.sharded))
            history.append(jax.device_get(metrics))
        return jax.device_get(state), history

    many, history_many = run_lomit(loop.make_placement())
    one, history_one = run_lomit(one_device_placement())
    diffs = {part: max_abs_diff(getattr(many, part), getattr(one, part)) for part in ("params", "batch_stats", "opt")}
    diffs["losses"] = max(float(np.max(np.abs(a[k] - b[k]))) for a, b in zip(history_many, history_one)
                          for k in a if k != "ran_G")
    print(json.dumps({"devices": jax.device_count(), "step": int(many.step),
                      "generator_updates": [bool(m["ran_G"]) for m in history_many], "max_abs_diff": diffs}))
    return 0


def one_device_placement() -> loop.Placement:
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    return loop.Placement(mesh, NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data")))


def max_abs_diff(a, b) -> float:
    """The largest |a - b| over two pytrees of arrays, in float64."""
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main() -> int:
    assert jax.device_count() == 8, f"expected 8 fake devices, got {jax.device_count()}"
    assert jax.config.jax_enable_x64, "run with JAX_ENABLE_X64=1"
    if sys.argv[1:] == ["lomit"]:
        return lomit_main()
    spec = training.StepSpec(ResnetModel(ngf=4, ndf=4, n_blocks=1, dtype="float64"), SIZE, SIZE,
                             train=InstaganTrain(ins_max=2, ins_per=1, pool_size=4))
    many, first_many, metrics_many = run(loop.make_placement(), spec)
    one, first_one, metrics_one = run(one_device_placement(), spec)
    losses = [k for k in first_one if not k.startswith("ran_")]
    diffs = {part: max_abs_diff(getattr(many, part), getattr(one, part))
             for part in ("params", "spectral", "opt", "pools")}
    diffs["losses"] = max(float(np.max(np.abs(metrics_many[k] - metrics_one[k]))) for k in losses)
    first_group = max(abs(float(first_many[k][0]) - float(first_one[k][0])) / max(abs(float(first_one[k][0])), 1e-12)
                      for k in losses)
    same_flags = all(np.array_equal(metrics_many[k], metrics_one[k]) for k in metrics_one if k.startswith("ran_"))
    print(json.dumps({"devices": jax.device_count(), "step": int(many.step), "adam_steps": 3 * spec.n_groups,
                      "lr": spec.train.lr, "first_group_loss_rel_diff": first_group,
                      "same_run_flags": same_flags, "max_abs_diff": diffs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
