"""The numbers of `instagan eval`, in NumPy: background preservation, mask agreement, shapes, FID/KID.

Masks are binarised at 0 (the middle of [-1, 1]). An infinite PSNR (identical backgrounds) is the
string "inf" in the JSON (`json_ready`), which is otherwise strict JSON (no NaN: an undefined value is null).
On shapes data the objects of any image are segmented by two-colour clustering (`segment_objects`), so
that methods with and without masks are scored on one footing (docs/EVAL.md).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from instagan_jax.data.shapes import ROUND_ANGULAR_THRESHOLD, rectangularity

SHAPE_THRESHOLD = ROUND_ANGULAR_THRESHOLD  # rectangularity at or above: angular (square/rectangle)
IRREGULAR_BELOW = 0.68  # below: neither shape (under the 1st percentile of real discs at 72x72, 0.69)
KID_SUBSET_SIZE = 1000  # features per KID subset, fewer when there are under 2000 images
DOMAINS = {"AtoB": ("A", "B"), "BtoA": ("B", "A")}  # direction -> (source, target) domain
SHAPE_NAMES = {"A": "round (disc/ellipse)", "B": "angular (square/rectangle)"}
SEGMENT_ITERATIONS = 10  # two-colour clustering steps of `segment_objects`

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
            from instagan_jax.nn.instances import merge_masks

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
            "background": background_summary(self.abs_sum, self.sq_sum, self.values, self.pixels),
            "background_outside_input": background_summary(*self.outside_input, self.pixels),
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
            result["target"] = background_summary(*self.target, self.target[2])
        if self.lpips:
            result["lpips_background"] = distribution(np.array(self.lpips))
        if shapes:
            result["background_outside_objects"] = background_summary(*self.outside_seen, self.pixels)
            result["image_shape"] = {"target": SHAPE_NAMES[target],
                                     "segmentation_iou_on_inputs": distribution(self.segmented_iou),
                                     "input": shape_summary(np.array(self.segmented_in), target),
                                     "translated": shape_summary(np.array(self.segmented_out), target)}
            if self.segmented_target:  # paired: the output's own targets
                result["image_shape"]["target_real"] = shape_summary(np.array(self.segmented_target), target)
        return result


def background_summary(abs_sum: float, sq_sum: float, values: int, pixels: int) -> dict[str, float | None]:
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
