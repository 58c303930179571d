"""Throughput of the input pipeline: examples (A/B pairs) per second at 200x200, K = 8.

    python experiments/bench_data.py [--batches 30] [--batch-size 4]

Sources: the built-in shapes (generated on the fly) and the same shapes written as a
reference-layout folder (PNG decode + resize 220 -> crop 200 + flip). Prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time


from instagan_jax.data import FolderSource, PairLoader, ShapesSource, TransformConfig
from instagan_jax.data.folder import write_folder
from instagan_jax.data.prepare.shapes import shapes_splits

TRANSFORM = TransformConfig(load_size=(220, 220), crop_size=(200, 200), flip=True, ins_max=8)
WARMUP_BATCHES = 2


def examples_per_second(sources, batch_size: int, batches: int, threads: int, workers: int) -> float:
    """Examples per second after `WARMUP_BATCHES` batches (process start-up not counted)."""
    with PairLoader(*sources, batch_size=batch_size, transform=TRANSFORM, seed=0,
                    num_threads=threads, num_workers=workers) as loader:
        for _ in range(WARMUP_BATCHES):
            next(loader)
        start = time.perf_counter()
        for _ in range(batches):
            next(loader)
        return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="timed batches per row")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--records", type=int, default=200, help="records per domain")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        write_folder(folder, shapes_splits(args.records, height=220, width=220))
        kinds = {
            "shapes": [ShapesSource(d, args.records, height=220, width=220) for d in "AB"],
            "folder (PNG)": [FolderSource(folder, "train", d) for d in "AB"],
        }
        print(f"200x200, K = 8, batch {args.batch_size}, {args.batches} timed batches\n")
        print("| source | threads | worker processes | examples/s | ms/example |")
        print("|---|---|---|---|---|")
        for name, sources in kinds.items():
            for threads, workers in ((0, 0), (2, 0), (0, 2), (1, 2)):
                rate = examples_per_second(sources, args.batch_size, args.batches, threads, workers)
                print(f"| {name} | {threads} | {workers} | {rate:.0f} | {1000 / rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
