"""Training-iteration speed: scan over mask groups vs unrolled, on the default config.

    python experiments/bench_train.py [--repeats 5] [--set key=value ...]

Prints a table: compile (first call) and mean seconds per iteration after it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax

from instagan_jax import loop, methods
from instagan_jax.config import load_config
from instagan_jax.methods.instagan import step as training


def time_iteration(spec: training.StepSpec, batch: dict, repeats: int) -> tuple[float, float]:
    placement = loop.make_placement()
    iteration = loop.compiled_step(methods.get("instagan"), spec, placement)
    state = jax.device_put(training.init_state(spec), placement.replicated)
    batch = loop.to_global(batch, loop.BATCH_KEYS["sets"], placement.sharded)
    start = time.perf_counter()
    state, _, _ = iteration(state, batch)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        state, _, _ = iteration(state, batch)
    jax.block_until_ready(state)
    return compile_s, (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    config = load_config(args.config, args.set)
    loader = loop.make_loader(config)
    batch = next(loader)
    loader.close()
    base = loop.step_spec(config, loader.batches_per_epoch)
    print(f"{config.name}: model {config.model}, {base.height}x{base.width}, batch {config.train.batch_size}, "
          f"{base.n_groups} groups, backend {jax.default_backend()}")
    print("| form | compile + first (s) | s / iteration | iterations / s |\n|---|---|---|---|")
    for label, unroll in (("lax.scan over groups", False), ("unrolled", True)):
        compile_s, per_iter = time_iteration(dataclasses.replace(base, unroll_groups=unroll), batch, args.repeats)
        print(f"| {label} | {compile_s:.1f} | {per_iter:.3f} | {1 / per_iter:.2f} |")


if __name__ == "__main__":
    main()
