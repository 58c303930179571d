"""A LOMIT run's translations of held-out images, as a grid: input, exemplar, learned mask, true mask,
translation, one row per image.

    python experiments/lomit_grid.py runs/lomit_shapes [--num 8] [--out docs/results/lomit_shapes_grid.png]

Rows are the held-out images `instagan eval` scores first (attribute_shapes: the training seed + 1000),
each with the next one as its exemplar, as in `instagan eval`; the checkpoint is the run's newest
(or `--checkpoint RUN/checkpoints/N`). The row label gives the input's and the exemplar's attributes.
"""

from __future__ import annotations

import argparse

import numpy as np

from instagan_jax import trained
from instagan_jax.data.attributes import transform_example
from instagan_jax.data.sources import open_data
from instagan_jax.data.transforms import TransformConfig
from instagan_jax.eval import splits
from instagan_jax.methods.lomit.networks import upsample_mask
from instagan_jax.methods.lomit.step import translate
from instagan_jax.visuals import sample_grid, save_png


def attribute_text(labels: np.ndarray, names: tuple[str, ...]) -> str:
    """'blue, striped', or 'none' where no attribute is on."""
    on = [name for name, value in zip(names, labels) if value > 0.5]
    return ", ".join(on) if on else "none"


def grid_rows(model, num: int) -> dict[str, dict[str, np.ndarray]]:
    """{row label: {column: (1, H, W, C) image in [-1, 1]}} for the first `num` held-out images."""
    data, _ = splits.held_out_data(model.config.data, set())
    source = open_data(data, "attributes")
    transform = TransformConfig(load_size=data.load_size, crop_size=data.crop_size, flip=False, ins_max=1)
    count = min(num, len(source))
    examples = [transform_example(source[i], transform, None) for i in range(count + 1)]
    images = np.stack([e["img"] for e in examples[:count]])
    exemplars = np.stack([e["img"] for e in examples[1:count + 1]])
    out = translate(model.networks["G"], images, exemplars)
    height, width = images.shape[1:3]
    learned = 2.0 * np.asarray(upsample_mask(out["mask"], height, width)) - 1.0
    rows = {}
    for i in range(count):
        names = tuple(source.attributes)
        label = (f"{i}: {attribute_text(examples[i]['labels'], names)} <- "
                 f"{attribute_text(examples[i + 1]['labels'], names)}")
        rows[label] = {"input": images[i:i + 1], "exemplar": exemplars[i:i + 1], "learned mask": learned[i:i + 1],
                       "true mask": 2.0 * examples[i]["mask"][None] - 1.0,
                       "translation": np.asarray(out["output"])[i:i + 1]}
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workdir", nargs="?", help="the run's folder (its newest checkpoint)")
    parser.add_argument("--checkpoint", help="one checkpoint folder, RUN/checkpoints/N (instead of a workdir)")
    parser.add_argument("--num", type=int, default=8, help="held-out images (rows), default 8")
    parser.add_argument("--out", default="lomit_grid.png", help="PNG to write")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error(f"--num must be at least 1, got {args.num}")
    model = trained.load_trained(args.workdir, args.checkpoint)
    if model.config.method != "lomit":
        parser.error(f"{model.checkpoint} is a {model.config.method} run, not a LOMIT one")
    rows = grid_rows(model, args.num)
    path = save_png(sample_grid(rows), args.out)
    print(f"{len(rows)} held-out images of {model.checkpoint} (step {model.step}): {path}")


if __name__ == "__main__":
    main()
