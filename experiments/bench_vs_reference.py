"""One InstaGAN training iteration: the PyTorch reference against ours, side by side, in one run.

    python experiments/bench_vs_reference.py [--sizes 64 128] [--full] [--iters 5] [--threads N]
        [--batches 1 [N ...] [fill]] [--fill-mib MIB] [--tiny] [--groups {auto,unrolled,scan}]
        [--set key=value ...] [--reference-dir PATH] [--ours-only] [--no-rss] [--json PATH]

Both train the reference's default architecture (ngf = ndf = 64, 9 residual blocks, batch 1,
ins_max 4, ins_per 2; `--tiny`: ngf = ndf = 8, for rehearsals) on the same synthetic batch (4 ellipse
instances per image). Per size: warm-up (ours: lower + compile), then timed iterations alternating
reference, ours, reference, ... so that machine noise hits both; medians are reported. Ours then runs at
each further batch of `--batches` alone (the reference's set generator takes batch 1 only); `fill` is the
batch that fills `--fill-mib` (default: 80% of the device's memory), estimated from the batch-1
program's compiled memory (its whole temp memory counted per image, so the estimate errs low).
Peak memory comes from separate processes (this script re-run with `--only ref|ours`), or with
`--no-rss` from this process's device allocators (GPU). With a persistent compilation cache
(`JAX_COMPILATION_CACHE_DIR`; experiments/gpu_suite.sh sets one) a rerun skips the compiles. The reference (https://github.com/sangwoomo/instagan, BSD) is imported
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
TINY = {"ngf": 8, "ndf": 8}  # --tiny: the same architecture, narrower (rehearsals on a CPU)
GROUPS = {"auto": "auto", "unrolled": "true", "scan": "false"}
N_INSTANCES, MIB = 4, 2**20


def synthetic_batch(size: int, seed: int = 0, images: int = 1) -> dict[str, np.ndarray]:
    """Our batch layout (img_X (N,H,W,3), masks_X (N,4,H,W,1) in [-1,1], valid_X (N,4)): smooth images,
    4 ellipses of distinct areas per image; one such sample repeated `images` times."""
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
    return {key: np.repeat(value, images, axis=0) for key, value in batch.items()}


def widths(tiny: bool) -> dict[str, int]:
    """ngf and ndf of both sides: the reference's defaults (64), or `--tiny`'s."""
    return dict(TINY) if tiny else {"ngf": 64, "ndf": 64}


def reference_step(reference_dir: Path, size: int, batch: dict, device: str, tiny: bool = False):
    """The unmodified reference model built as its train.py does; returns a callable running one iteration."""
    import torch

    model = reference_instagan({"batch_size": 1, "loadSizeH": size, "loadSizeW": size, "fineSizeH": size,
                                "fineSizeW": size, "ins_max": N_INSTANCES, "ins_per": 2, **widths(tiny)},
                               0, device, reference_dir)
    data = reference_input(batch, device)

    def step() -> None:
        model.set_input(data)
        model.optimize_parameters()
        if device == "cuda":
            torch.cuda.synchronize()

    return step


def ours_step(size: int, batch: dict, groups: str, overrides: list[str], count_flops: bool = True,
              tiny: bool = False):
    """Our jitted iteration at the batch's size, compiled ahead of time; returns (step callable, lower +
    compile s, XLA figures and the lowering's share). FLOPs are counted on CPU only (XLA's GPU backend has no cost analysis of a lowering)."""
    import jax

    from instagan_jax import loop, methods
    from instagan_jax.methods import load_config
    from instagan_jax.methods.instagan import step as training
    images = len(batch["img_A"])
    config = load_config("default", [*ARCHITECTURE, *(f"model.{k}={v}" for k, v in widths(tiny).items()),
                                     f"train.batch_size={images}", f"data.crop_size=[{size},{size}]",
                                     f"train.unroll_groups={GROUPS[groups]}", *overrides])
    placement = loop.make_placement()
    spec = loop.step_spec(config, 1000.0)
    holder = {"state": jax.device_put(training.init_state(spec), placement.replicated)}
    data = loop.to_global(batch, loop.BATCH_KEYS["sets"], placement.sharded)
    start = time.perf_counter()
    lowered = loop.compiled_step(methods.get("instagan"), spec, placement).lower(holder["state"], data)
    lower_s = time.perf_counter() - start
    compiled = lowered.compile()  # from the persistent compilation cache where one is set and holds it
    compile_s = time.perf_counter() - start
    loop.release_compile_memory()  # as loop.train does after compiling
    # XLA's cost analysis counts a loop body once: count the FLOPs on the unrolled form (lowered, not compiled)
    flops = None
    if count_flops and jax.default_backend() == "cpu":  # (not in the memory processes: tracing the
        # unrolled form takes memory of its own)
        unrolled = loop.compiled_step(methods.get("instagan"), dataclasses.replace(spec, unroll_groups=True), placement)
        cost = unrolled.lower(holder["state"], data).cost_analysis()
        flops = cost.get("flops") if cost else None

    def step() -> None:
        holder["state"], _, _ = compiled(holder["state"], data)
        jax.block_until_ready(holder["state"])

    return step, compile_s, {**xla_memory(compiled), "flops": flops, "lower_s": lower_s}


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
    """`--only ref|ours`: warm-up + 2 iterations of one implementation at batch `--batches`[0], then its
    peak memory as JSON."""
    size = args.sizes[0]
    batch = synthetic_batch(size, images=int(args.batches[0]) if args.only == "ours" else 1)
    if args.only == "ref":
        with contextlib.redirect_stdout(io.StringIO()):
            step = reference_step(args.reference_dir, size, batch, args.ref_device, args.tiny)
    else:
        step = ours_step(size, batch, args.groups, args.set, count_flops=False, tiny=args.tiny)[0]
    for _ in range(3):
        step()
    print("PEAK " + json.dumps(peak_memory(args.only, args.ref_device)))


def peak_in_subprocess(which: str, size: int, images: int, args) -> dict:
    """Run this script with `--only which` for one size and batch; its peak memory (None figures if it failed)."""
    command = [sys.executable, __file__, "--only", which, "--sizes", str(size), "--batches", str(images),
               "--groups", args.groups, "--reference-dir", str(args.reference_dir), "--ref-device", args.ref_device,
               *(["--tiny"] if args.tiny else []), *[f"--set={s}" for s in args.set]]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PEAK ")]
    if result.returncode or not lines:
        print(f"  ({which} memory run failed: {(result.stderr.strip().splitlines() or ['?'])[-1]})")
        return {"rss_mib": None, "device_mib": None}
    return json.loads(lines[-1][5:])


def memory_budget_mib(args) -> float:
    """What `fill` may use: --fill-mib, else 80% of the device's allocator limit."""
    import jax

    if args.fill_mib:
        return args.fill_mib
    limit = (jax.devices()[0].memory_stats() or {}).get("bytes_limit")
    if not limit:
        raise SystemExit(f"--batches fill: the {jax.default_backend()} backend reports no memory limit; pass --fill-mib")
    return 0.8 * limit / MIB


def fill_batch(first: dict, budget_mib: float) -> int:
    """The batch whose program fits `budget_mib`, from the batch-1 program: arguments (the train state) once,
    plus the whole batch-1 temp memory per image (its batch-independent part counted per image too: errs low)."""
    if first["temp_mib"] is None:
        raise SystemExit("--batches fill: this backend gives no compiled memory figures to size the batch from")
    return max(1, int((budget_mib - first["argument_mib"]) // max(first["temp_mib"], 1e-3)))


def ours_row(size: int, images: int, args) -> tuple[dict, object]:
    """Compile ours at one batch; its first call timed. Returns (row figures, step callable)."""
    step, compile_s, figures = ours_step(size, synthetic_batch(size, images=images), args.groups, args.set,
                                         tiny=args.tiny)
    return {"compile_s": compile_s, "first_call_s": timed(step), "iters_s": [], **figures}, step


def finish(row: dict, impl: str, size: int, images: int, args) -> None:
    """Median, rates and peak memory of one implementation's row."""
    r = row[impl]
    r["median_s"] = statistics.median(r["iters_s"])
    r["images_per_s"] = images / r["median_s"]
    if args.rss:
        r.update(peak_in_subprocess(impl, size, images, args))
    else:  # this process's device allocator (GPU); no RSS figure
        r.update(rss_mib=None, device_mib=peak_memory(impl, args.ref_device)["device_mib"])
    if impl == "ours":
        r["gflops_per_s"] = r["flops"] / r["median_s"] / 1e9 if r["flops"] else None


def bench_size(size: int, args, with_reference: bool, done) -> list[dict]:
    """Batch 1: warm-up both, alternate timed iterations. Each further batch of `--batches`: ours alone.
    `done(rows)` is called after each row, so that a long run keeps what it measured."""
    ours, step = ours_row(size, 1, args)
    row = {"size": size, "batch": 1, "ours": ours}
    if with_reference:
        with contextlib.redirect_stdout(io.StringIO()):
            ref = reference_step(args.reference_dir, size, synthetic_batch(size), args.ref_device, args.tiny)
        row["ref"] = {"first_call_s": timed(ref), "iters_s": []}
    for _ in range(args.iters):
        if with_reference:
            row["ref"]["iters_s"].append(timed(ref))
        row["ours"]["iters_s"].append(timed(step))
    for impl in ("ref", "ours") if with_reference else ("ours",):
        finish(row, impl, size, 1, args)
    if with_reference:
        row["speedup_images_per_s"] = row["ours"]["images_per_s"] / row["ref"]["images_per_s"]
    rows = [row]
    done(rows)
    del step
    for choice in args.batches[1:]:
        images = fill_batch(ours, memory_budget_mib(args)) if choice == "fill" else int(choice)
        print(f"{size}x{size}, ours at batch {images}{' (fill)' if choice == 'fill' else ''} ...", flush=True)
        figures, step = ours_row(size, images, args)
        figures["iters_s"] = [timed(step) for _ in range(args.iters)]
        later = {"size": size, "batch": images, "fill": choice == "fill", "ours": figures}
        finish(later, "ours", size, images, args)
        if with_reference:
            later["speedup_images_per_s"] = figures["images_per_s"] / row["ref"]["images_per_s"]
        rows.append(later)
        done(rows)
        del step
    return rows


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


def timing_line(row: dict, impl: str, matmul: float) -> str:
    """One markdown row: batch, warm-up, median, rates, speed against the reference, memory, GFLOP/s."""
    r, size = row[impl], row["size"]
    warm = (f"{r['compile_s']:.1f} lower+compile (lower {r['lower_s']:.1f}) + {r['first_call_s']:.2f}"
            if "compile_s" in r else f"{r['first_call_s']:.2f}")
    rate = r.get("gflops_per_s")
    share = f"{rate:.1f} ({100 * rate / matmul:.0f}%)" if rate else ""
    batch = f"{row['batch']}{' (fill)' if row.get('fill') else ''}" if impl == "ours" else "1"
    speedup = f"**{row['speedup_images_per_s']:.2f}x**" if impl == "ours" and "speedup_images_per_s" in row else ""
    return (f"| {size}x{size} | {impl} | {batch} | {warm} | {r['median_s']:.3f} | {r['images_per_s']:.2f} "
            f"| {speedup} | {fmt(r['rss_mib'], '.0f')} | {fmt(r['device_mib'], '.0f')} | {share} |")


def report(info: dict, rows: list[dict], groups: str) -> str:
    """The machine line, the timing table and the XLA table (markdown)."""
    lines = [(f"machine: {info['cpu']}, {info['cores']} cores used (XLA threads: {info['cores']}, torch threads: "
              f"{fmt(info['torch_threads'], 'd')}); jax {info['jax']}, jaxlib {info['jaxlib']}, torch "
              f"{info['torch'] or 'n/a'}; backend {info['backend']} ({info['device_kind']}), reference on "
              f"{info['ref_device'] or 'n/a'}; mask groups {groups}; overrides {info['overrides'] or 'none'}"),
             f"jax float32 {info['matmul_n']}^3 matmul: {info['matmul_gflops']:.1f} GFLOP/s", "",
             ("| size | impl | batch | warm-up s | median s/iter | images/s | images/s vs ref (batch 1) "
              "| peak RSS MiB | peak device MiB | GFLOP/s (% of matmul) |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "ref" in row:
            lines.append(timing_line(row, "ref", info["matmul_gflops"]))
        lines.append(timing_line(row, "ours", info["matmul_gflops"]))
    lines += ["", "| XLA (ours) | batch | GFLOP / iter | temp MiB | argument MiB | output MiB | generated code MiB |",
              "|---|---|---|---|---|---|---|"]
    for row in rows:
        o = row["ours"]
        sizes = " | ".join(fmt(o[f"{k}_mib"], ".1f") for k in ("temp", "argument", "output", "generated_code"))
        lines.append(f"| {row['size']}x{row['size']} | {row['batch']} | {fmt(o['flops'] and o['flops'] / 1e9, '.1f')} "
                     f"| {sizes} |")
    return "\n".join(lines)


def batch_choice(value: str) -> str:
    if value != "fill" and not (value.isdigit() and int(value) >= 1):
        raise argparse.ArgumentTypeError(f"a batch is a positive integer or 'fill', got {value!r}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--full", action="store_true", help="add 200x200 (the paper's COCO size)")
    parser.add_argument("--iters", type=int, default=5, help="timed iterations of each, alternating")
    parser.add_argument("--batches", type=batch_choice, nargs="+", default=["1"],
                        help="ours' batches: 1 first (beside the reference), then more, e.g. '1 8 fill'")
    parser.add_argument("--fill-mib", type=float, help="memory for --batches fill (default: 80%% of the device's)")
    parser.add_argument("--tiny", action="store_true", help="ngf = ndf = 8 on both sides (rehearsals)")
    parser.add_argument("--threads", type=int,
                        help="cores for both (CPU affinity, torch threads; default all; 1 on a busy machine)")
    parser.add_argument("--groups", choices=sorted(GROUPS), default="auto",
                        help="ours: unrolled or lax.scan over mask groups (auto: the config's choice)")
    parser.add_argument("--set", action="append", default=[], help="config override for ours, key=value")
    parser.add_argument("--reference-dir", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--ref-device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: cuda when jax runs on gpu and torch sees CUDA")
    parser.add_argument("--ours-only", action="store_true")
    parser.add_argument("--no-rss", dest="rss", action="store_false",
                        help="no peak-memory processes: device memory from this process (GPU), no RSS")
    parser.add_argument("--only", choices=("ref", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="write all figures here (after each row)")
    args = parser.parse_args(argv)
    args.sizes = sorted(set(args.sizes + ([200] if args.full else [])))
    if args.batches[0] != "1" and not args.only:
        parser.error("--batches starts with 1: the row timed beside the reference (and the one 'fill' sizes from)")
    if min(args.iters, *args.sizes) < 1 or (args.fill_mib is not None and args.fill_mib <= 0):
        parser.error("--iters and --sizes must be >= 1, --fill-mib > 0")
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
    info = {**machine(args, with_reference), "overrides": args.set, "tiny": args.tiny}
    rows: list[dict] = []

    def done(size_rows: list[dict]) -> None:  # the report and the JSON so far: a long run keeps what it measured
        print(report(info, [*rows, *size_rows], args.groups), flush=True)
        if args.json:
            write_atomically(args.json, json.dumps({"machine": info, "groups": args.groups, "overrides": args.set,
                                                    "rows": [*rows, *size_rows]}, indent=1) + "\n")

    for size in args.sizes:
        print(f"{size}x{size} ...", flush=True)
        rows.extend(bench_size(size, args, with_reference, done))


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file: a run stopped mid-write leaves the last full JSON."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    temporary.replace(path)


if __name__ == "__main__":
    main()
