"""One InstaGAN training iteration: the PyTorch reference against ours, side by side, in one run.

    python experiments/bench_vs_reference.py [--sizes 64 128] [--full] [--iters 5] [--threads N]
        [--groups {auto,unrolled,scan}] [--set key=value ...] [--reference-dir PATH] [--ours-only]
        [--json PATH]

Both train the reference's default architecture (ngf = ndf = 64, 9 residual blocks, batch 1,
ins_max 4, ins_per 2) on the same synthetic batch (4 ellipse instances per image). Per size: warm-up
(ours: lower + compile), then timed iterations alternating reference, ours, reference, ... so that
machine noise hits both; medians are reported. Peak memory comes from separate processes (this script
re-run with `--only ref|ours`). The reference (https://github.com/sangwoomo/instagan, BSD) is imported
at run time from `--reference-dir`, unmodified; torch comes with `pip install -e '.[torch]'`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "experiments"))

from reference_import import REFERENCE_DIR as DEFAULT_REFERENCE  # noqa: E402
from reference_import import reference_input, reference_instagan, reference_missing  # noqa: E402

ARCHITECTURE = ["model.ngf=64", "model.ndf=64", "model.n_blocks=9", "train.batch_size=1",
                "train.ins_max=4", "train.ins_per=2"]
GROUPS = {"auto": "auto", "unrolled": "true", "scan": "false"}
N_INSTANCES, MIB = 4, 2**20


def synthetic_batch(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Our batch layout (img_X (1,H,W,3), masks_X (1,4,H,W,1) in [-1,1], valid_X (1,4)): smooth images,
    4 ellipses of distinct areas per image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    batch = {}
    for domain in ("A", "B"):
        phase = rng.uniform(0, 2 * np.pi, (3, 1, 1))
        img = 0.8 * np.sin(6 * xx + 4 * yy + phase) + 0.1 * rng.standard_normal((3, size, size))
        masks = []
        for radius in (0.3, 0.24, 0.18, 0.12):
            cy, cx = rng.uniform(0.3, 0.7, 2)
            inside = ((yy - cy) / radius) ** 2 + ((xx - cx) / (0.8 * radius)) ** 2 <= 1
            masks.append(np.where(inside, 1.0, -1.0))
        batch[f"img_{domain}"] = np.clip(img, -1, 1).transpose(1, 2, 0)[None].astype(np.float32)
        batch[f"masks_{domain}"] = np.stack(masks)[None, ..., None].astype(np.float32)
        batch[f"valid_{domain}"] = np.ones((1, N_INSTANCES), bool)
    return batch


def reference_step(reference_dir: Path, size: int, batch: dict, device: str):
    """The unmodified reference model built as its train.py does; returns a callable running one iteration."""
    import torch

    model = reference_instagan({"batch_size": 1, "loadSizeH": size, "loadSizeW": size, "fineSizeH": size,
                                "fineSizeW": size, "ins_max": N_INSTANCES, "ins_per": 2}, 0, device, reference_dir)
    data = reference_input(batch, device)

    def step() -> None:
        model.set_input(data)
        model.optimize_parameters()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def ours_step(size: int, batch: dict, groups: str, overrides: list[str], count_flops: bool = True):
    """Our jitted iteration, compiled ahead of time; returns (step callable, compile s, XLA figures)."""
    import jax

    from instagan_jax import loop, methods
    from instagan_jax.methods import load_config
    from instagan_jax.methods.instagan import step as training
    config = load_config("default", [*ARCHITECTURE, f"data.crop_size=[{size},{size}]",
                                     f"train.unroll_groups={GROUPS[groups]}", *overrides])
    placement = loop.make_placement()
    spec = loop.step_spec(config, 1000.0)
    holder = {"state": jax.device_put(training.init_state(spec), placement.replicated)}
    data = loop.to_global(batch, loop.BATCH_KEYS["sets"], placement.sharded)
    start = time.perf_counter()
    compiled = loop.compiled_step(methods.get("instagan"), spec, placement).lower(holder["state"], data).compile()
    compile_s = time.perf_counter() - start
    loop.release_compile_memory()  # as loop.train does after compiling
    # XLA's cost analysis counts a loop body once: count the FLOPs on the unrolled form (lowered, not compiled)
    flops = None
    if count_flops:  # (not in the memory processes: tracing the unrolled form takes memory of its own)
        unrolled = loop.compiled_step(methods.get("instagan"), dataclasses.replace(spec, unroll_groups=True), placement)
        cost = unrolled.lower(holder["state"], data).cost_analysis()  # None on some backends (GPU)
        flops = cost.get("flops") if cost else None

    def step() -> None:
        holder["state"], _, _ = compiled(holder["state"], data)
        jax.block_until_ready(holder["state"])

    return step, compile_s, {**xla_memory(compiled), "flops": flops}


def xla_memory(compiled) -> dict:
    """XLA's memory_analysis sizes in MiB (None where this backend gives none)."""
    memory = compiled.memory_analysis()
    return {f"{field}_mib": None if memory is None else getattr(memory, f"{field}_size_in_bytes", 0) / MIB
            for field in ("temp", "argument", "output", "generated_code")}


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def matmul_gflops(n: int, repeats: int = 3) -> float:
    """jax float32 n x n matmul rate (default precision), best of `repeats` after a warm-up."""
    import jax
    import jax.numpy as jnp
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    matmul = jax.jit(jnp.dot)
    jax.block_until_ready(matmul(a, a))
    best = min(timed(lambda: jax.block_until_ready(matmul(a, a))) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def peak_memory(which: str, device: str) -> dict:
    """This process's peak RSS and (on GPU) peak device memory, in MiB. Linux's VmHWM, not ru_maxrss: after
    (v)fork + exec, ru_maxrss starts from the parent's peak."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    hwm = [line.split()[1] for line in lines if line.startswith("VmHWM:")]
    rss_kib = int(hwm[0]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"rss_mib": rss_kib / 1024, "device_mib": None}
    if which == "ref" and device == "cuda":
        import torch
        out["device_mib"] = torch.cuda.max_memory_allocated() / MIB
    elif which == "ours":
        import jax
        stats = jax.devices()[0].memory_stats() or {}
        out["device_mib"] = stats["peak_bytes_in_use"] / MIB if "peak_bytes_in_use" in stats else None
    return out


def measure_alone(args) -> None:
    """`--only ref|ours`: warm-up + 2 iterations of one implementation, then its peak memory as JSON."""
    size, batch = args.sizes[0], synthetic_batch(args.sizes[0])
    if args.only == "ref":
        with contextlib.redirect_stdout(io.StringIO()):
            step = reference_step(args.reference_dir, size, batch, args.ref_device)
    else:
        step = ours_step(size, batch, args.groups, args.set, count_flops=False)[0]
    for _ in range(3):
        step()
    print("PEAK " + json.dumps(peak_memory(args.only, args.ref_device)))


def peak_in_subprocess(which: str, size: int, args) -> dict:
    """Run this script with `--only which` for one size; its peak memory (None figures if it failed)."""
    command = [sys.executable, __file__, "--only", which, "--sizes", str(size), "--groups", args.groups,
               "--reference-dir", str(args.reference_dir), "--ref-device", args.ref_device,
               *[f"--set={s}" for s in args.set]]
    result = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PEAK ")]
    if result.returncode or not lines:
        print(f"  ({which} memory run failed: {(result.stderr.strip().splitlines() or ['?'])[-1]})")
        return {"rss_mib": None, "device_mib": None}
    return json.loads(lines[-1][5:])


def bench_size(size: int, args, with_reference: bool) -> dict:
    """Warm-up both, alternate timed iterations, XLA figures; then peak memory of each in its own process."""
    batch = synthetic_batch(size)
    ours, compile_s, figures = ours_step(size, batch, args.groups, args.set)
    row = {"size": size, "ours": {"compile_s": compile_s, "first_call_s": timed(ours), "iters_s": [], **figures}}
    if with_reference:
        with contextlib.redirect_stdout(io.StringIO()):
            ref = reference_step(args.reference_dir, size, batch, args.ref_device)
        row["ref"] = {"first_call_s": timed(ref), "iters_s": []}
    for _ in range(args.iters):
        if with_reference:
            row["ref"]["iters_s"].append(timed(ref))
        row["ours"]["iters_s"].append(timed(ours))
    for impl in ("ref", "ours") if with_reference else ("ours",):
        row[impl]["median_s"] = statistics.median(row[impl]["iters_s"])
        row[impl].update(peak_in_subprocess(impl, size, args) if args.rss else {"rss_mib": None, "device_mib": None})
    flops = row["ours"]["flops"]
    row["ours"]["gflops_per_s"] = flops / row["ours"]["median_s"] / 1e9 if flops else None
    if with_reference:
        row["ratio_ref_over_ours"] = row["ref"]["median_s"] / row["ours"]["median_s"]
    return row


def machine(args, with_reference: bool) -> dict:
    """CPU model, cores and threads, versions, backend, device kind, the matmul reference rate."""
    import jax
    import jaxlib
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    info = {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
            "torch": None, "torch_threads": None, "ref_device": args.ref_device if with_reference else None}
    if with_reference:
        import torch
        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    info["matmul_n"] = 8192 if info["backend"] == "gpu" else 2048
    info["matmul_gflops"] = matmul_gflops(info["matmul_n"])
    return info


def fmt(value, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


def timing_line(size: int, impl: str, r: dict, ratio: str, matmul: float) -> str:
    """One markdown row: warm-up, median, rates (batch 1: images/s = iterations/s), memory, GFLOP/s."""
    warm = f"{r['compile_s']:.1f} compile + {r['first_call_s']:.2f}" if "compile_s" in r else f"{r['first_call_s']:.2f}"
    rate = r.get("gflops_per_s")
    share = f"{rate:.1f} ({100 * rate / matmul:.0f}%)" if rate else ""
    return (f"| {size}x{size} | {impl} | {warm} | {r['median_s']:.3f} | {1 / r['median_s']:.2f} | {1 / r['median_s']:.2f} "
            f"| {ratio} | {fmt(r['rss_mib'], '.0f')} | {fmt(r['device_mib'], '.0f')} | {share} |")


def report(info: dict, rows: list[dict], groups: str) -> str:
    """The machine line, the timing table and the XLA table (markdown)."""
    lines = [f"machine: {info['cpu']}, {info['cores']} cores used (XLA threads: {info['cores']}, torch threads: "
             f"{fmt(info['torch_threads'], 'd')}); jax {info['jax']}, jaxlib {info['jaxlib']}, torch "
             f"{info['torch'] or 'n/a'}; backend {info['backend']} ({info['device_kind']}), reference on "
             f"{info['ref_device'] or 'n/a'}; mask groups {groups}",
             f"jax float32 {info['matmul_n']}^3 matmul: {info['matmul_gflops']:.1f} GFLOP/s", "",
             "| size | impl | warm-up s | median s/iter | iter/s | images/s | ref/ours | peak RSS MiB "
             "| peak device MiB | GFLOP/s (% of matmul) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "ref" in row:
            lines.append(timing_line(row["size"], "ref", row["ref"], "", info["matmul_gflops"]))
        ratio = f"{row['ratio_ref_over_ours']:.2f}x" if "ref" in row else ""
        lines.append(timing_line(row["size"], "ours", row["ours"], ratio, info["matmul_gflops"]))
    lines += ["", "| XLA (ours) | GFLOP / iter | temp MiB | argument MiB | output MiB | generated code MiB |",
              "|---|---|---|---|---|---|"]
    for row in rows:
        o = row["ours"]
        sizes = " | ".join(fmt(o[f"{k}_mib"], ".1f") for k in ("temp", "argument", "output", "generated_code"))
        lines.append(f"| {row['size']}x{row['size']} | {fmt(o['flops'] and o['flops'] / 1e9, '.1f')} | {sizes} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--full", action="store_true", help="add 200x200 (the paper's COCO size)")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations of each, alternating")
    parser.add_argument("--threads", type=int,
                        help="cores for both (CPU affinity, torch threads; default all; 1 on a busy machine)")
    parser.add_argument("--groups", choices=sorted(GROUPS), default="auto",
                        help="ours: unrolled or lax.scan over mask groups (auto: the config's choice)")
    parser.add_argument("--set", action="append", default=[], help="config override for ours, key=value")
    parser.add_argument("--reference-dir", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--ref-device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda when jax runs on gpu and torch sees CUDA")
    parser.add_argument("--ours-only", action="store_true")
    parser.add_argument("--no-rss", dest="rss", action="store_false", help="skip the peak-memory processes")
    parser.add_argument("--only", choices=("ref", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args(argv)
    args.sizes = sorted(set(args.sizes + ([200] if args.full else [])))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads])  # before any XLA thread pool
    threads = len(os.sched_getaffinity(0))
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU
    skip_reference = args.ours_only or args.only == "ours"  # an `--only ours` process must not load torch
    missing = None if skip_reference else reference_missing(args.reference_dir)
    missing = missing and f"reference not timed: {missing}"
    if not (skip_reference or missing):
        import torch
        torch.set_num_threads(threads)
        if args.ref_device == "auto":
            on_gpu = torch.cuda.is_available()
            if args.only is None:  # an `--only ref` process does not import jax: its memory would count
                import jax
                on_gpu = on_gpu and jax.default_backend() == "gpu"
            args.ref_device = "cuda" if on_gpu else "cpu"
    if args.only:
        return measure_alone(args)
    if missing:
        print(missing + "; timing ours alone")
    with_reference = not (skip_reference or missing)
    info = machine(args, with_reference)
    rows = []
    for size in args.sizes:  # the report and the JSON so far after each size: a long run keeps what it measured
        print(f"{size}x{size} ...", flush=True)
        rows.append(bench_size(size, args, with_reference))
        print(report(info, rows, args.groups), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"machine": info, "groups": args.groups, "overrides": args.set,
                                             "sizes": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
