"""XLA CPU's conv paths, side by side: the same generator and discriminator calls under each set of flags.

    python experiments/bench_cpu_paths.py [--size 64] [--rounds 3] [--repeats 5] [--paths NAME ...]
        [--json PATH]

XLA flags are read once per process, so each path runs in its own process (this script with `--child`),
the paths in turns, `--rounds` times, with the order reversed every other round so that a drift of the
machine's speed hits all of them alike. Each child builds the reference architecture (ngf = ndf = 64, 9
residual blocks, 2 masks), compiles one generator call and one discriminator call, forward + parameter
gradients of the sum of their outputs, and reports the median of `--repeats` calls of each, the compile
time, and where the compiled program's convolutions went: the library fusion that holds each
(`__ynn_fusion`: YNNPACK, `__xnn_fusion`: XNNPACK, `__onednn...`: oneDNN) or XLA's own (Eigen) thunk. The
table gives each path's medians over the rounds, and its speed against the default path.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PATHS = {  # name -> XLA_FLAGS
    "default": "",
    "no xnnpack/ynnpack": "--xla_cpu_use_xnnpack=false",
    "XNN graph fusion greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "XNN graph fusion greedy+slinky": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY_SLINKY",
    "YNN fusions dot,eltwise,reduce": "--xla_cpu_experimental_ynn_fusion_type=dot,eltwise,reduce",
    "oneDNN fusions dot,eltwise,reduce": "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce",
    "oneDNN thunks + custom calls": "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true",
    "vector width 512": "--xla_cpu_prefer_vector_width=512",
    "fast math": "--xla_cpu_enable_fast_math=true",
    "single-threaded Eigen": "--xla_cpu_multi_thread_eigen=false",
}
LIBRARY_KINDS = ("__ynn_fusion", "__xnn_fusion", "__onednn")


def placement(hlo: str, op: str) -> collections.Counter:
    """How many `op` instructions (' convolution(', ' dot(') of a compiled CPU module sit in each kind of
    caller: a library fusion (its backend_config kind) or XLA's own code ('xla')."""
    ops_in, caller_kind, computation = collections.Counter(), {}, None
    for line in hlo.splitlines():
        header = re.match(r"^(?:ENTRY )?%(\S+) \(.*\{$", line)
        if header:
            computation = header.group(1)
        elif op in line and computation:
            ops_in[computation] += 1
        called = re.search(r"calls=%([\w.\-]+)", line)
        if called:
            kind = re.search(r'"kind":"(__[\w$]+)"', line)
            caller_kind[called.group(1)] = kind.group(1) if kind else "xla"
    where = collections.Counter()
    for name, count in ops_in.items():
        kind = caller_kind.get(name, "xla")
        where[next((k for k in LIBRARY_KINDS if kind.startswith(k)), "xla")] += count
    return where


def child(size: int, repeats: int) -> dict:
    """Compile and time one generator and one discriminator call (forward + parameter gradients)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from instagan_jax.methods import load_config
    from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
    from instagan_jax.nn.build import create

    config = load_config("default", ["model.ngf=64", "model.ndf=64", "model.n_blocks=9"]).model
    rng = np.random.default_rng(0)
    img = jnp.asarray(rng.uniform(-1, 1, (1, size, size, 3)), jnp.float32)
    half = np.where(np.arange(size)[:, None] < size // 2, 1.0, -1.0) * np.ones((1, 2, 1, size))
    masks, valid = jnp.asarray(half[..., None], jnp.float32), jnp.ones((1, 2), bool)
    out = {}
    for name, network in (("G", SetGenerator), ("D", SetDiscriminator)):
        graphdef, params, rest = nnx.split(create(network, config, 0), nnx.Param, ...)

        def loss(params, rest, graphdef=graphdef):  # the rest (spectral-norm vectors) is updated in the call
            outputs = nnx.merge(graphdef, params, rest, copy=True)(img, masks, valid)
            return sum(jnp.sum(o) for o in jax.tree.leaves(outputs))

        start = time.perf_counter()
        compiled = jax.jit(jax.grad(loss)).lower(params, rest).compile()
        out[f"{name}_compile_s"] = time.perf_counter() - start
        hlo = compiled.as_text()
        out[f"{name}_convs"], out[f"{name}_dots"] = (dict(placement(hlo, op)) for op in (" convolution(", " dot("))
        jax.block_until_ready(compiled(params, rest))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(compiled(params, rest))
            times.append(time.perf_counter() - start)
        out[f"{name}_ms"] = 1000 * statistics.median(times)
    return out


def run_child(name: str, args) -> dict | None:
    """One path in its own process; None (and a line saying why) if it failed."""
    env = {**os.environ, "XLA_FLAGS": PATHS[name]}
    command = [sys.executable, __file__, "--child", "--size", str(args.size), "--repeats", str(args.repeats)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode or not lines:
        print(f"  {name}: failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
        return None
    return json.loads(lines[-1][7:])


def table(results: dict[str, list[dict]]) -> list[str]:
    """Markdown: per path, medians over rounds, speed against the default path, where the convs went."""
    def median(name: str, key: str) -> float | None:
        values = [r[key] for r in results.get(name, [])]
        return statistics.median(values) if values else None

    lines = [("| path | XLA_FLAGS | G fwd+bwd ms | D fwd+bwd ms | G vs default | D vs default | compile G / D s "
              "| G convs / dots: where | D convs / dots: where |"), "|---|---|---|---|---|---|---|---|---|"]
    base_g, base_d = median("default", "G_ms"), median("default", "D_ms")
    for name, runs in results.items():
        if not runs:
            lines.append(f"| {name} | `{PATHS[name]}` | failed | | | | | | |")
            continue
        g, d = median(name, "G_ms"), median(name, "D_ms")
        where = [" / ".join(", ".join(f"{k} {v}" for k, v in sorted(runs[0][f"{n}_{op}"].items())) or "none"
                            for op in ("convs", "dots")) for n in ("G", "D")]
        versus = [f"{base / value:.2f}x" if base else "" for base, value in ((base_g, g), (base_d, d))]
        lines.append(f"| {name} | `{PATHS[name] or '(none)'}` | {g:.1f} | {d:.1f} | {versus[0]} | {versus[1]} "
                     f"| {median(name, 'G_compile_s'):.1f} / {median(name, 'D_compile_s'):.1f} | {where[0]} | {where[1]} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--paths", nargs="+", choices=sorted(PATHS), default=list(PATHS), metavar="NAME",
                        help=f"a subset of: {', '.join(PATHS)}")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.size, args.rounds, args.repeats) < 1:
        parser.error("--size, --rounds and --repeats must be >= 1")
    if args.child:
        print("RESULT " + json.dumps(child(args.size, args.repeats)), flush=True)
        return
    paths = ["default", *[p for p in args.paths if p != "default"]]
    print(f"{len(paths)} paths x {args.rounds} rounds, {args.size}x{args.size}, {len(os.sched_getaffinity(0))} cores",
          flush=True)
    results: dict[str, list[dict]] = {name: [] for name in paths}
    for round_index in range(args.rounds):
        for name in paths if round_index % 2 == 0 else paths[::-1]:
            result = run_child(name, args)
            if result:
                results[name].append(result)
                print(f"  round {round_index + 1} {name}: G {result['G_ms']:.1f} ms, D {result['D_ms']:.1f} ms", flush=True)
        if args.json:
            args.json.write_text(json.dumps({"size": args.size, "paths": PATHS, "results": results}, indent=1) + "\n")
    print("\n".join(table(results)))


if __name__ == "__main__":
    main()
