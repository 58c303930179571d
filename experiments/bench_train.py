"""Training-iteration speed and compiled memory: the mask-group loop as a `lax.scan` vs unrolled.

    python experiments/bench_train.py [--instances 4 8 16 32] [--repeats 5] [--set key=value ...]

For each number of instances K (train.ins_max = K, train.ins_per kept, so K / ins_per groups) and each
form, prints compile seconds, XLA's compiled temp memory and (with --repeats > 0) the mean seconds per
iteration after the first call, on the config's model (default: the `default` config).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax

from instagan_jax import loop, methods
from instagan_jax.methods import load_config
from instagan_jax.methods.instagan import step as training

FORMS = (("lax.scan", False), ("unrolled", True))


def measure(spec: training.StepSpec, batch: dict, repeats: int) -> dict[str, float]:
    """Compile seconds, compiled temp GiB and seconds per iteration of one iteration form."""
    placement = loop.make_placement()
    iteration = loop.compiled_step(methods.get("instagan"), spec, placement)
    state = jax.device_put(training.init_state(spec), placement.replicated)
    batch = loop.to_global(batch, loop.BATCH_KEYS["sets"], placement.sharded)
    start = time.perf_counter()
    compiled = iteration.lower(state, batch).compile()
    result = {"compile_s": time.perf_counter() - start,
              "temp_gib": compiled.memory_analysis().temp_size_in_bytes / 2**30}
    if repeats:
        state, _, _ = compiled(state, batch)
        jax.block_until_ready(state)
        start = time.perf_counter()
        for _ in range(repeats):
            state, _, _ = compiled(state, batch)
        jax.block_until_ready(state)
        result["s_per_iter"] = (time.perf_counter() - start) / repeats
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="default")
    parser.add_argument("--instances", type=int, nargs="+", default=[4], help="values of train.ins_max")
    parser.add_argument("--repeats", type=int, default=5, help="timed iterations (0: compile only)")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    args = parser.parse_args()
    print("| K instances | groups | form | compile (s) | compiled temp (GiB) | s / iteration | iterations / s |")
    print("|---|---|---|---|---|---|---|")
    for k in args.instances:
        config = load_config(args.config, [*args.set, f"train.ins_max={k}", f"data.options.max_instances={k}"])
        loader = loop.make_loader(config)
        batch = next(loader)
        loader.close()
        base = loop.step_spec(config, loader.batches_per_epoch)
        for label, unroll in FORMS:
            r = measure(dataclasses.replace(base, unroll_groups=unroll), batch, args.repeats)
            speed = (f"{r['s_per_iter']:.3f} | {1 / r['s_per_iter']:.2f}" if "s_per_iter" in r else "- | -")
            print(f"| {k} | {base.n_groups} | {label} | {r['compile_s']:.1f} | {r['temp_gib']:.3f} | {speed} |",
                  flush=True)
    print(f"\n{config.name} config: model {config.model}, {base.height}x{base.width}, batch {config.train.batch_size}, "
          f"ins_per {base.ins_per}, backend {jax.default_backend()}, jax {jax.__version__}")


if __name__ == "__main__":
    main()
