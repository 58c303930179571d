"""Can a run's discriminators tell the two shapes domains apart? (Why shapes do or do not change.)

    python experiments/probe_discriminators.py runs/quality/checkpoints/250 runs/quality/checkpoints/1671

For each checkpoint, D_A (which judges domain B) and D_B (domain A) score held-out real images of
both domains (shapes seed 1000, the run's image size and instance count). Prints the mean score of
each domain and the AUC: the chance that a real image of the discriminator's own domain scores higher
than one of the other domain (0.5 = cannot tell them apart, 1 = always can). Without this signal the
GAN loss gives the generators no reason to change shapes.
"""

from __future__ import annotations

import argparse

import numpy as np

from instagan_jax.data.shapes import shapes_record
from instagan_jax.nn.build import apply
from instagan_jax.trained import load_trained

HELD_OUT_SEED = 1000


def held_out_batch(domain: str, count: int, size: tuple[int, int], slots: int, options: dict):
    """Images (N,H,W,3) and masks (N,slots,H,W,1) in [-1,1] with validity, drawn at the network's size."""
    imgs, masks = [], []
    for index in range(count):
        image, instance_masks = shapes_record(domain, index, HELD_OUT_SEED, *size, slots,
                                              tuple(options.get("object_size", (0.06, 0.2))))
        imgs.append(image / 127.5 - 1.0)
        padded = [m.astype(np.float32) * 2 - 1 for m in instance_masks[:slots]]
        padded += [-np.ones(size, np.float32)] * (slots - len(padded))
        masks.append(np.stack(padded)[..., None])
    masks = np.asarray(masks, np.float32)
    return np.asarray(imgs, np.float32), masks, np.any(masks > -1, axis=(2, 3, 4))


def auc(own: np.ndarray, other: np.ndarray) -> float:
    """P(score of an own-domain image > score of an other-domain image), ties counted half."""
    diff = own[:, None] - other[None, :]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--num", type=int, default=100)
    args = parser.parse_args()
    print(f"{'checkpoint':<40} {'D':<4} {'own domain':>10} {'other':>8} {'AUC':>6}")
    for folder in args.checkpoints:
        model = load_trained(checkpoint=folder)
        size, slots = tuple(model.config.data.crop_size), model.config.train.ins_max
        batches = {d: held_out_batch(d, args.num, size, slots, model.config.data.options) for d in "AB"}
        for name, own, other in (("D_A", "B", "A"), ("D_B", "A", "B")):
            scores = {d: np.asarray(apply(model.networks[name], *batches[d])).mean(axis=(1, 2, 3)) for d in "AB"}
            print(f"{folder:<40} {name:<4} {scores[own].mean():>10.3f} {scores[other].mean():>8.3f} "
                  f"{auc(scores[own], scores[other]):>6.3f}")


if __name__ == "__main__":
    main()
