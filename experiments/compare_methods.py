"""Translate the same held-out shapes images with several runs and draw them side by side.

    python experiments/compare_methods.py runs/quality/checkpoints/2000 runs/cyclegan_quality/checkpoints/2000 \
        --num 6 [--scale 3] --out docs/results/compare_step_2000.png

Rows: held-out images of domain A (`--direction BtoA`: of domain B), the same ones `instagan eval`
scores first; columns: the input, then each run's translation (InstaGAN's with its masks beside it).
The runs must share their data config (the first run's is used).
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import ImageFont

from instagan_jax import methods, trained
from instagan_jax.data.sources import open_data
from instagan_jax.data.transforms import TransformConfig, transform_record
from instagan_jax.eval import splits
from instagan_jax.nn.build import x64_scope
from instagan_jax.nn.instances import merge_masks, select_largest
from instagan_jax.visuals import join_tiles, save_png, text_tile, to_uint8


def label(text: str, width: int) -> np.ndarray:
    """A white strip `width` pixels wide with `text` in it."""
    return text_tile(text, 26, width, ImageFont.load_default(size=10))


def enlarge(tile: np.ndarray, scale: int) -> np.ndarray:
    """Every pixel of an (H, W, C) tile as a scale x scale block."""
    return np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", help="checkpoint folders RUN/checkpoints/N")
    parser.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB")
    parser.add_argument("--num", type=int, default=6)
    parser.add_argument("--scale", type=int, default=1, help="draw every pixel as a scale x scale block (small images)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args()
    if args.scale < 1 or args.num < 1:
        parser.error("--scale and --num must be >= 1")
    models = [trained.load_trained(checkpoint=c) for c in args.checkpoints]
    config = models[0].config
    data_config, split = splits.held_out_data(config.data, set())
    source = dict(zip("AB", open_data(data_config)))[args.direction[0]]
    transform = TransformConfig(load_size=data_config.load_size, crop_size=data_config.crop_size, flip=False,
                                ins_max=config.train.ins_max)
    examples = [transform_record(source[i], transform) for i in range(args.num)]
    img = np.stack([e["img"] for e in examples])
    masks, _ = select_largest(np.stack([e["masks"] for e in examples]), config.train.ins_max)  # translation order
    columns = [("input", [img, merge_masks(masks)])]
    for model in models:
        translate = methods.get(model.config.method).translator(model, methods.TranslateOptions(direction=args.direction))
        with x64_scope(model.config.model.dtype):
            fake_img, fake_masks = translate(img, masks)
        tiles = [fake_img] if fake_masks is None else [fake_img, merge_masks(fake_masks)]
        columns.append((f"{model.config.method}\nstep {model.step}", tiles))
    width = img.shape[2] * args.scale
    header = join_tiles([label(name, width * len(tiles) + 2 * (len(tiles) - 1)) for name, tiles in columns], 1, 6)
    rows = [join_tiles([join_tiles([enlarge(to_uint8(np.asarray(t)[i]), args.scale) for t in tiles])
                        for _, tiles in columns], 1, 6) for i in range(args.num)]
    path = save_png(join_tiles([header, *rows], 0), args.out)
    print(f"{args.num} held-out images ({split}), {args.direction}: {path}")


if __name__ == "__main__":
    main()
