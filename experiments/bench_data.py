"""Throughput of the input pipeline: examples (A/B pairs) per second at 200x200, K = 8.

    python experiments/bench_data.py [--batches 30] [--batch-size 4] [--sources shapes folder coco]

Sources: the built-in shapes (generated on the fly); the same shapes written as a
reference-layout folder (PNG decode); real COCO photos (JPEG decode of 640x427..640x586 photos,
polygon and RLE masks decoded at full size) from ../shared/data/icevision_coco_samples, person
(A, 9 and 1 instances) and bottle (B, 14 instances). Every example is resized 220 -> random crop
200 + flip (bicubic). Prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from data_prep.shapes import shapes_splits
from instagan_jax.data import (
    FolderSource,
    PairLoader,
    ShapesSource,
    TransformConfig,
    coco_sources,
)
from instagan_jax.data.folder import write_folder
from instagan_jax.data.tfds_data import TfdsSource

TRANSFORM = TransformConfig(load_size=(220, 220), crop_size=(200, 200), flip=True, ins_max=8)
WARMUP_BATCHES = 2
COCO_SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "icevision_coco_samples"


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


def coco_tfds_sources(data_dir: Path) -> tuple[TfdsSource, TfdsSource]:
    """The COCO samples prepared by `instagan prepare coco` (256x256 PNG) into `data_dir`, read back."""
    from data_prep.coco import CocoRecipe
    from data_prep.instagan_coco import Builder, pair_config
    from instagan_jax.data import tfds_data

    recipe = CocoRecipe(splits=(("train", "annotations.json", "images"),))
    builder = Builder(data_dir=str(data_dir), config=pair_config("person", "bottle"), recipe=recipe)
    tfds_data.build(builder, COCO_SAMPLES)
    return tuple(TfdsSource("instagan_coco/person_bottle", f"train{d}", data_dir) for d in "AB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30, help="timed batches per row")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--records", type=int, default=200, help="shapes records per domain")
    parser.add_argument("--sources", nargs="+", choices=("shapes", "folder", "coco", "coco-tfds"),
                        default=("shapes", "folder", "coco", "coco-tfds"))
    parser.add_argument("--setups", nargs="+", default=("0:0", "2:0", "0:2", "1:2"), metavar="THREADS:WORKERS",
                        help="loader setups to time (default 0:0 2:0 0:2 1:2)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        kinds = {}
        if "shapes" in args.sources:
            kinds["shapes"] = [ShapesSource(d, args.records, height=220, width=220) for d in "AB"]
        if "folder" in args.sources:
            write_folder(folder, shapes_splits(args.records, height=220, width=220))
            kinds["folder (PNG)"] = [FolderSource(folder, "train", d) for d in "AB"]
        if "coco" in args.sources:
            kinds["COCO photos (JPEG)"] = coco_sources(COCO_SAMPLES / "annotations.json", COCO_SAMPLES / "images",
                                                       "person", "bottle")
        if "coco-tfds" in args.sources:
            kinds["COCO prepared (TFDS, PNG 256)"] = coco_tfds_sources(Path(folder) / "tfds")
        print(f"200x200, K = 8, batch {args.batch_size}, {args.batches} timed batches\n")
        print("| source | threads | worker processes | examples/s | ms/example |")
        print("|---|---|---|---|---|")
        for name, sources in kinds.items():
            for threads, workers in (map(int, setup.split(":")) for setup in args.setups):
                rate = examples_per_second(sources, args.batch_size, args.batches, threads, workers)
                print(f"| {name} | {threads} | {workers} | {rate:.0f} | {1000 / rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
