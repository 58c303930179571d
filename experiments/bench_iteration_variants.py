"""InstaGAN's training iteration as shipped against variants of it: compile time, speed, temp memory, peak RSS.

    python experiments/bench_iteration_variants.py [--variants shipped stacked_blocks winograd]
        [--sizes 64 128] [--iters 3] [--tiny] [--json PATH]

Variants (each replaces a piece of the package in the measuring process only; nothing of them ships):
- `shipped`: the package as it is.
- `stacked_blocks`: the residual blocks stored stacked. The shipped `nn.modules.Encoder` keeps one
  parameter set per block (the checkpoint's and the reference's layout) and unrolls the blocks. This
  variant stores each block parameter once for all blocks, with a leading block axis (one
  (9, 3, 3, 256, 256) kernel instead of nine), and runs the blocks as one `lax.scan` over them: the
  form BENCHMARKS section 7 names as the way to a smaller program. Same init (the per-block values,
  stacked); outputs and gradients agree to float32 rounding (checked at 3 blocks: 2e-6 on outputs up
  to 5.7, 3e-4 on kernel gradients up to 329).
- `winograd`: the 3x3 stride-1 convs (forward and input gradient) by Winograd F(2x2, 3x3) where
  experiments/bench_winograd.py measured it faster than XLA's conv (`bench_winograd.install`).

Per size and variant, a fresh process (this script, `--measure`) compiles InstaGAN's whole iteration at
the reference's architecture (batch 1, ins_max 4, 4 instances; `bench_vs_reference.ours_step`) and runs
warm-up + `--iters` iterations; it reports the median, XLA's temp memory and its own peak RSS (VmHWM,
compile included, as bench_vs_reference's memory processes). Variants alternate within each size. A
second table: XLA's temp memory of one generator's parameter gradient through 1 and 3 chained calls
(as a mask group chains them), which isolates where a variant's temp memory goes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))

MIB = 2**20


def install_stacked_blocks() -> None:
    """Make every `nn.modules.Encoder` built from now on hold its residual blocks stacked and scan them."""
    import jax
    from flax import nnx

    from instagan_jax.nn import layers, modules

    class StackedResnetBlocks(nnx.Module):
        """`n` ResnetBlocks' parameters with a leading block axis; `__call__` scans the blocks."""

        def __init__(self, ch: int, n: int, *, rngs: nnx.Rngs):
            blocks = [modules.ResnetBlock(ch, rngs=rngs) for _ in range(n)]  # the shipped init, in its order
            for conv in ("conv1", "conv2"):
                for leaf in ("kernel", "bias"):
                    values = [getattr(getattr(block, conv), leaf)[...] for block in blocks]
                    setattr(self, f"{conv}_{leaf}", nnx.Param(jax.numpy.stack(values)))

        def __call__(self, x: jax.Array) -> jax.Array:
            def block(x, params):
                kernel1, bias1, kernel2, bias2 = modules.to_compute(self, *params)
                conv = {"padding": 1, "pad_mode": "reflect"}
                h = jax.nn.relu(modules.instance_norm(layers.conv2d(x, kernel1, bias1, **conv)))
                return x + modules.instance_norm(layers.conv2d(h, kernel2, bias2, **conv)), None

            stacked = (self.conv1_kernel[...], self.conv1_bias[...], self.conv2_kernel[...], self.conv2_bias[...])
            return jax.lax.scan(block, x, stacked)[0]

    def init(self, in_ch: int, ngf: int, n_blocks: int, *, rngs: nnx.Rngs):
        self.stem = modules.Conv(in_ch, ngf, 7, padding=3, pad_mode="reflect", rngs=rngs)
        self.down1 = modules.Conv(ngf, 2 * ngf, 3, stride=2, padding=1, rngs=rngs)
        self.down2 = modules.Conv(2 * ngf, 4 * ngf, 3, stride=2, padding=1, rngs=rngs)
        self.blocks = StackedResnetBlocks(4 * ngf, n_blocks, rngs=rngs)

    def call(self, x: jax.Array) -> jax.Array:
        for conv in (self.stem, self.down1, self.down2):
            x = jax.nn.relu(modules.instance_norm(conv(x)))
        return self.blocks(x)

    modules.Encoder.__init__, modules.Encoder.__call__ = init, call


def generator_grad_temp_mib(size: int, calls: int, ngf: int) -> float:
    """XLA temp memory of d(sum of outputs)/d(params) of one SetGenerator applied `calls` times in a chain."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from instagan_jax.methods.instagan.config import InstaganModel
    from instagan_jax.methods.instagan.networks import SetGenerator
    from instagan_jax.nn.build import abstract

    graphdef, shapes = nnx.split(abstract(SetGenerator, InstaganModel(ngf=ngf, n_blocks=9)))
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    img, masks, valid = jnp.zeros((1, size, size, 3)), jnp.zeros((1, 4, size, size, 1)), jnp.ones((1, 4), bool)

    def loss(p):
        total, x, m = 0.0, img, masks
        for _ in range(calls):
            x, m = nnx.merge(graphdef, p)(x, m, valid)
            total = total + jnp.mean(x) + jnp.mean(m)
        return total

    memory = jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis()
    return memory.temp_size_in_bytes / MIB


def install_winograd() -> None:
    import bench_winograd

    bench_winograd.install()


VARIANTS = {"shipped": lambda: None, "stacked_blocks": install_stacked_blocks, "winograd": install_winograd}


def measure(variant: str, size: int, iters: int, tiny: bool) -> dict:
    """One variant at one size, in this process: the iteration's figures and the chained-call temps."""
    VARIANTS[variant]()
    import bench_vs_reference as bench

    ngf = bench.widths(tiny)["ngf"]
    chained = {f"grad_temp_{calls}_calls_mib": generator_grad_temp_mib(size, calls, ngf) for calls in (1, 3)}
    step, compile_s, figures = bench.ours_step(size, bench.synthetic_batch(size), "auto", [], count_flops=False,
                                               tiny=tiny)
    step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = bench.peak_memory("ours", "cpu")
    return {"variant": variant, "size": size, "compile_s": compile_s, "median_s": statistics.median(times),
            "iters_s": times, "temp_mib": figures["temp_mib"], "rss_mib": peak["rss_mib"], **chained}


def in_subprocess(variant: str, size: int, args) -> dict:
    command = [sys.executable, __file__, "--measure", variant, "--sizes", str(size), "--iters", str(args.iters),
               *(["--tiny"] if args.tiny else [])]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("ROW ")]
    if result.returncode or not lines:
        raise SystemExit(f"{variant} at {size}x{size} failed:\n{result.stderr[-2000:]}")
    return json.loads(lines[-1][4:])


def table(rows: list[dict]) -> str:
    lines = ["| size | variant | compile s | median s/iter | temp MiB | peak RSS MiB |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['size']}x{r['size']} | {r['variant']} | {r['compile_s']:.1f} | {r['median_s']:.3f} "
              f"| {r['temp_mib']:.0f} | {r['rss_mib']:.0f} |" for r in rows]
    lines += ["", "| size | variant | generator grad temp MiB, 1 call | 3 chained calls |", "|---|---|---|---|"]
    lines += [f"| {r['size']}x{r['size']} | {r['variant']} | {r['grad_temp_1_calls_mib']:.0f} "
              f"| {r['grad_temp_3_calls_mib']:.0f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--iters", type=int, default=3, help="timed iterations after one warm-up")
    parser.add_argument("--tiny", action="store_true", help="ngf = ndf = 8 (rehearsals)")
    parser.add_argument("--json", type=Path, help="write the rows here (after each)")
    parser.add_argument("--measure", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iters < 1:
        parser.error(f"--iters must be at least 1, got {args.iters}")
    from instagan_jax.nn.modules import check_resnet_gan_size

    for size in args.sizes:
        try:
            check_resnet_gan_size(size, size)
        except ValueError as err:
            parser.error(f"--sizes {size}: {err}")
    if args.measure:
        print("ROW " + json.dumps(measure(args.measure, args.sizes[0], args.iters, args.tiny)))
        return
    rows = []
    for size in args.sizes:
        for variant in args.variants:
            print(f"{size}x{size}, {variant} ...", flush=True)
            rows.append(in_subprocess(variant, size, args))
            if args.json:
                args.json.write_text(json.dumps({"cpu_count": os.cpu_count(), "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
