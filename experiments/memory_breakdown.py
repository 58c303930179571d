"""Where the resident memory of our reference-size iteration goes, step by step (Linux only).

    python experiments/memory_breakdown.py [--size 64] [--set key=value ...]

Builds `bench_vs_reference.py`'s iteration (the reference's architecture, 4 instances) and prints the
process's resident memory (VmRSS) after each step: imports, the train state, lowering, compiling,
`loop.release_compile_memory()`, one iteration (and the peak, VmHWM), then after dropping the compiled
executable and clearing jax's caches. Beside it: the executable's serialized size, the compiled program's
size (HLO lines, fusions, convolutions) and XLA's temp buffer, so that the executable's resident share can
be set against its size on disk.
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_vs_reference as bench  # noqa: E402

MIB = 2**20


def resident_mib(field: str = "VmRSS") -> float:
    """This process's VmRSS (or VmHWM, the peak) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def program_size(compiled) -> dict:
    """Lines, fusions and convolutions of the compiled HLO text."""
    text = compiled.as_text()
    return {"hlo_lines": text.count("\n"), "fusions": len(re.findall(r"= \S+ fusion\(", text)),
            "convolutions": text.count(" convolution(")}


def breakdown(size: int, overrides: list[str]) -> tuple[list[tuple[str, float, str]], dict]:
    """[(step, RSS MiB after it, note)] and the executable's figures."""
    import jax
    from jax.experimental import serialize_executable

    from instagan_jax import loop, methods
    from instagan_jax.methods import load_config
    from instagan_jax.methods.instagan import step as training

    rows = [("imports", resident_mib(), "jax, flax, the package")]
    config = load_config("default", [*bench.ARCHITECTURE, f"data.crop_size=[{size},{size}]", *overrides])
    placement = loop.make_placement()
    spec = loop.step_spec(config, 1000.0)
    state = jax.device_put(training.init_state(spec), placement.replicated)
    data = loop.to_global(bench.synthetic_batch(size), loop.BATCH_KEYS["sets"], placement.sharded)
    state_mib = sum(leaf.nbytes for leaf in jax.tree.leaves(state)) / MIB
    rows.append(("train state", resident_mib(), f"{state_mib:.0f} MiB of arrays"))
    lowered = loop.compiled_step(methods.get("instagan"), spec, placement).lower(state, data)
    rows.append(("lowered", resident_mib(), ""))
    start = time.perf_counter()
    compiled = lowered.compile()
    rows.append(("compiled", resident_mib(), f"{time.perf_counter() - start:.0f} s"))
    del lowered
    gc.collect()
    loop.release_compile_memory()
    rows.append(("release_compile_memory()", resident_mib(), ""))
    serialized_mib = len(serialize_executable.serialize(compiled)[0]) / MIB
    gc.collect()
    loop.release_compile_memory()
    figures = {"serialized_mib": serialized_mib, "temp_mib": compiled.memory_analysis().temp_size_in_bytes / MIB,
               **program_size(compiled)}
    state, _, _ = compiled(state, data)
    jax.block_until_ready(state)
    rows.append(("one iteration", resident_mib(), f"peak so far {resident_mib('VmHWM'):.0f} MiB"))
    before = resident_mib()
    del compiled
    jax.clear_caches()
    gc.collect()
    loop.release_compile_memory()
    after = resident_mib()
    rows.append(("executable dropped, jax caches cleared", after, f"frees {before - after:.0f} MiB"))
    return rows, figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, help="image height and width (a multiple of 4)")
    parser.add_argument("--set", action="append", default=[], help="config override, key=value")
    args = parser.parse_args(argv)
    if args.size < 16 or args.size % 4:
        parser.error(f"--size must be a multiple of 4 and at least 16, got {args.size}")
    if not Path("/proc/self/status").exists():
        parser.error("this script reads /proc/self/status: Linux only")
    rows, figures = breakdown(args.size, args.set)
    print(f"\n{args.size}x{args.size}, reference architecture\n")
    print("| after | RSS MiB | change | note |\n|---|---|---|---|")
    previous = 0.0
    for step, rss, note in rows:
        print(f"| {step} | {rss:.0f} | {rss - previous:+.0f} | {note} |")
        previous = rss
    print(f"\nexecutable: {figures['serialized_mib']:.1f} MiB serialized; program {figures['hlo_lines']} HLO lines, "
          f"{figures['fusions']} fusions, {figures['convolutions']} convolutions; XLA temp {figures['temp_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
