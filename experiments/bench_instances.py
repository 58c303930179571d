"""The cost of empty instance slots: InstaGAN's training iteration, padded against packed instances.

    python experiments/bench_instances.py [--size 64] [--batches 1 8] [--ins-max 4] \
        [--layouts padded packed:0.5] [--counts N ...] [--draws 4] [--iters 4] [--tiny] [--json PATH]

Each row is one (batch size, ins_max, layout): compile seconds, XLA's compiled temp memory and the
median seconds per iteration over `--iters` timed iterations (after one untimed), cycling through
`--draws` batches whose per-image instance counts are drawn from `--counts` (default COCO_LIKE_COUNTS,
the real ones of ../shared/data's COCO samples). The model is the
reference's (ngf = ndf = 64, 9 blocks, transposed convs; `--tiny`: ngf = ndf = 8, for rehearsals).
Images and masks are synthetic (smooth images, ellipses of distinct areas): only the counts matter here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

# Instances per image in the real sample folders of ../shared/data (the reference's shp2gir_coco
# sampleA/sampleB, 14 COCO photos of sheep and giraffes, and icevision's 5 annotated COCO val photos).
COCO_LIKE_COUNTS = (2, 2, 2, 4, 5, 6, 8, 1, 2, 2, 2, 2, 4, 5, 1, 2, 3, 14, 16)
ARCHITECTURE = ["model.n_blocks=9", "model.upsample=transpose", "train.pool_size=50"]


def layout_overrides(layout: str) -> list[str]:
    """'padded' or 'packed:FRACTION' -> config overrides (none for padded, the default: so that a checkout
    from before the packed layout runs the padded rows too)."""
    if layout == "padded":
        return []
    name, _, fraction = layout.partition(":")
    try:
        share = float(fraction)
    except ValueError:
        share = None
    if name != "packed" or share is None or not 0.0 < share <= 1.0:
        raise SystemExit(f"--layouts: expected 'padded' or 'packed:FRACTION' with 0 < FRACTION <= 1, got {layout!r}")
    return ["model.instance_layout=packed", f"model.pack_fraction={share}"]


def draw_batch(rng: np.random.Generator, images: int, ins_max: int, size: int,
               counts: tuple[int, ...] = COCO_LIKE_COUNTS) -> dict[str, np.ndarray]:
    """Our batch layout with per-image instance counts drawn from `counts` (at most ins_max kept)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    batch = {}
    for domain in ("A", "B"):
        drawn = np.minimum(rng.choice(counts, images), ins_max)
        img = np.clip(0.8 * np.sin(6 * xx + 4 * yy + rng.uniform(0, 6.3, (images, 3, 1, 1)))
                      + 0.1 * rng.standard_normal((images, 3, size, size)), -1, 1)
        masks = -np.ones((images, ins_max, size, size, 1), np.float32)
        for b, n in enumerate(drawn):
            for k in range(n):
                radius = 0.3 * (1 - k / (ins_max + 1))
                cy, cx = rng.uniform(0.3, 0.7, 2)
                inside = ((yy - cy) / radius) ** 2 + ((xx - cx) / (0.8 * radius)) ** 2 <= 1
                masks[b, k, inside] = 1.0
        batch[f"img_{domain}"] = img.transpose(0, 2, 3, 1).astype(np.float32)
        batch[f"masks_{domain}"] = masks
        batch[f"valid_{domain}"] = np.any(masks > -1, axis=(2, 3, 4))
    return batch


def measure(size: int, images: int, ins_max: int, layout: str, draws: list[dict], iters: int,
            tiny: bool) -> dict:
    """Compile s, temp MiB and median s / iteration of one configuration."""
    import jax

    from instagan_jax import loop, methods
    from instagan_jax.methods import load_config
    from instagan_jax.methods.instagan import step as training

    widths = ["model.ngf=8", "model.ndf=8"] if tiny else ["model.ngf=64", "model.ndf=64"]
    config = load_config("default", [*ARCHITECTURE, *widths, *layout_overrides(layout),
                                     f"train.batch_size={images}", f"train.ins_max={ins_max}",
                                     f"data.crop_size=[{size},{size}]"])
    placement = loop.make_placement()
    spec = loop.step_spec(config, 1000.0)
    state = jax.device_put(training.init_state(spec), placement.replicated)
    batches = [loop.to_global(b, loop.BATCH_KEYS["sets"], placement.sharded) for b in draws]
    start = time.perf_counter()
    compiled = loop.compiled_step(methods.get("instagan"), spec, placement).lower(state, batches[0]).compile()
    compile_s = time.perf_counter() - start
    loop.release_compile_memory()
    memory = compiled.memory_analysis()
    state, _, _ = compiled(state, batches[0])
    jax.block_until_ready(state)
    times = []
    for i in range(iters):
        start = time.perf_counter()
        state, _, _ = compiled(state, batches[(i + 1) % len(batches)])
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    s_per_iter = statistics.median(times)
    return {"batch": images, "ins_max": ins_max, "layout": layout, "compile_s": compile_s,
            "temp_mib": None if memory is None else memory.temp_size_in_bytes / 2**20,
            "s_per_iter": s_per_iter, "images_per_s": images / s_per_iter, "times_s": times}


def occupancy(draws: list[dict]) -> float:
    """Share of the mask slots holding an instance, over the draws and both domains."""
    return float(np.mean([np.mean(b[f"valid_{d}"]) for b in draws for d in ("A", "B")]))


def table(rows: list[dict]) -> str:
    lines = ["| batch | ins_max | slots used | layout | compile (s) | temp (MiB) | s / iteration | images / s | vs padded |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        base = next(r for r in rows if r["batch"] == row["batch"] and r["ins_max"] == row["ins_max"]
                    and r["layout"] == "padded")
        temp = "n/a" if row["temp_mib"] is None else f"{row['temp_mib']:.0f}"
        lines.append(f"| {row['batch']} | {row['ins_max']} | {row['occupancy']:.0%} | {row['layout']} | "
                     f"{row['compile_s']:.0f} | {temp} | {row['s_per_iter']:.3f} | {row['images_per_s']:.2f} | "
                     f"{base['s_per_iter'] / row['s_per_iter']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--ins-max", type=int, nargs="+", default=[4])
    parser.add_argument("--layouts", nargs="+", default=["padded", "packed:0.5"])
    parser.add_argument("--draws", type=int, default=4, help="batches of drawn counts, cycled through")
    parser.add_argument("--iters", type=int, default=4, help="timed iterations per row (after one untimed)")
    parser.add_argument("--counts", type=int, nargs="+", default=list(COCO_LIKE_COUNTS),
                        help="instances per image to draw from (default: COCO_LIKE_COUNTS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="ngf = ndf = 8 (a rehearsal)")
    parser.add_argument("--json", type=Path, help="write the rows here (rewritten after each row)")
    args = parser.parse_args()
    if "padded" not in args.layouts:
        parser.error("--layouts must include padded (the rows are compared with it)")
    for layout in args.layouts:
        layout_overrides(layout)
    rows = []
    for ins_max in args.ins_max:
        for images in args.batches:
            rng = np.random.default_rng(args.seed)
            draws = [draw_batch(rng, images, ins_max, args.size, tuple(args.counts)) for _ in range(args.draws)]
            for layout in args.layouts:
                row = {**measure(args.size, images, ins_max, layout, draws, args.iters, args.tiny),
                       "occupancy": occupancy(draws)}
                rows.append(row)
                print(f"batch {images} ins_max {ins_max} {layout}: {row['s_per_iter']:.3f} s/iteration "
                      f"(compile {row['compile_s']:.0f} s)", flush=True)
                if args.json:
                    info = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                            "size": args.size, "tiny": args.tiny, "iters": args.iters, "draws": args.draws,
                            "counts": args.counts}
                    tmp = args.json.with_suffix(".tmp")
                    tmp.write_text(json.dumps({"info": info, "rows": rows}, indent=1))
                    tmp.replace(args.json)
    print(table(rows))


if __name__ == "__main__":
    main()
