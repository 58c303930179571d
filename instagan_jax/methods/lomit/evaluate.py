"""`instagan eval` of a LOMIT run (docs/EVAL.md, "LOMIT"): exemplar-guided translation of held-out images.

Each held-out image x1 (the first `num` records, centre-cropped) takes as its exemplar x2 the next held-out
image (index i + 1 mod n) and is translated to x12. Scored:

- the input's learned mask (bilinearly upsampled, binarised at `MASK_THRESHOLD`) against the true object
  mask, where the data has one: IoU (with the IoU of an all-ones mask as the baseline), and the mean soft
  mask value inside and outside the true mask;
- the background outside the true mask, translation vs input (L1 in 0-255 units and PSNR), and the same
  inside the true mask (how much the object changed); with an LPIPS distance, the LPIPS of the two with
  the true-mask pixels filled in both (`perceptual.background_lpips`);
- an attribute classifier's verdict (`classifier`, trained on real images of the run's training split):
  its accuracy on the real held-out images, then classifier(x12) against the exemplar's labels y2, and
  classifier(x1) against y2 as the baseline of not translating at all;
- FID/KID of the translations against the real held-out images, with a feature network.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from instagan_jax.data.sources import open_data
from instagan_jax.eval.metrics import background_summary, batches, distribution, feature_distances, iou
from instagan_jax.eval.tables import number, quartiles

MASK_THRESHOLD = 0.5  # the learned soft mask (0, 1) counts as object above this
TRUSTED_ACCURACY = 0.9  # below this on real held-out images, the classifier's verdicts get a warning
CLASSIFIER_FOLDER = "attribute_classifier"  # under RUN/eval/
NO_MASKS = ("mask and background metrics need true object masks: {kind} data has none, so they are null "
            "(only the attribute accuracies and FID/KID apply)")


def learned_mask_iou(soft: np.ndarray, true: np.ndarray, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """IoU of each soft mask (n, H, W) binarised at `threshold` with the bool true mask (n, H, W)."""
    return iou(np.asarray(true, bool), np.asarray(soft) > threshold)


def all_ones_iou(true: np.ndarray) -> np.ndarray:
    """IoU a mask covering the whole image would score against each bool true mask (n, H, W): its area share."""
    true = np.asarray(true, bool)
    return iou(true, np.ones_like(true))


def region_difference(real_img: np.ndarray, fake_img: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Translation - input in 0-255 units at the pixels of the bool `region` (n, H, W): (k, C) float64."""
    diff = (np.asarray(fake_img, np.float64) - np.asarray(real_img, np.float64)) * 127.5
    return diff[np.asarray(region, bool)]


def accuracy(logits: np.ndarray, labels: np.ndarray, attributes: tuple[str, ...]) -> dict[str, Any]:
    """Share of images whose predicted attribute (logit > 0) equals the 0/1 label, per attribute, and
    the share with every attribute right (`all`); None for no image."""
    predicted, truth = np.asarray(logits) > 0, np.asarray(labels) > 0.5
    right = predicted == truth
    if not len(right):
        return {"per_attribute": {name: None for name in attributes}, "all": None, "count": 0}
    return {"per_attribute": {name: float(right[:, j].mean()) for j, name in enumerate(attributes)},
            "all": float(right.all(axis=1).mean()), "count": int(len(right))}


@dataclasses.dataclass
class MaskTally:
    """What the batches of images with true masks add up to."""

    iou: list = dataclasses.field(default_factory=list)
    ones_iou: list = dataclasses.field(default_factory=list)
    soft_inside: list = dataclasses.field(default_factory=lambda: [0.0, 0])  # sum, pixels
    soft_outside: list = dataclasses.field(default_factory=lambda: [0.0, 0])
    outside: list = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0])  # |d|, d^2, values
    inside: list = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0])
    pixels: int = 0  # all values of the images
    images: int = 0
    lpips: list = dataclasses.field(default_factory=list)  # per image, with an LPIPS distance

    def add(self, real_img, fake_img, soft_mask, true_mask, perceptual=None) -> None:
        """Images (n, H, W, C), the learned mask upsampled to (n, H, W) in (0, 1), true masks (n, H, W) bool;
        `perceptual`: an LPIPS distance (`perceptual.load_lpips`) or None."""
        true = np.asarray(true_mask, bool)
        soft = np.asarray(soft_mask, np.float64)
        self.iou.extend(learned_mask_iou(soft, true))
        self.ones_iou.extend(all_ones_iou(true))
        for total, region in ((self.soft_inside, true), (self.soft_outside, ~true)):
            total[0] += float(soft[region].sum())
            total[1] += int(region.sum())
        for total, region in ((self.outside, ~true), (self.inside, true)):
            diff = region_difference(real_img, fake_img, region)
            total[0] += float(np.abs(diff).sum())
            total[1] += float(np.square(diff).sum())
            total[2] += diff.size
        self.pixels += np.asarray(real_img).size
        self.images += len(true)
        if perceptual is not None:
            from instagan_jax.perceptual import background_lpips

            union = np.where(true, 1.0, -1.0)[..., None]
            self.lpips.extend(background_lpips(perceptual, real_img, fake_img, union, union))

    def summary(self) -> dict[str, Any]:
        mean = (lambda t: t[0] / t[1] if t[1] else None)
        lpips = {"lpips_background": distribution(np.array(self.lpips))} if self.lpips else {}
        return {
            "images": self.images,
            "mask": {"threshold": MASK_THRESHOLD, "iou": distribution(np.array(self.iou)),
                     "iou_all_ones": distribution(np.array(self.ones_iou)),
                     "mean_inside": mean(self.soft_inside), "mean_outside": mean(self.soft_outside)},
            "background": background_summary(*self.outside, self.pixels),
            "object": background_summary(*self.inside, self.pixels),
            **lpips,
        }


def evaluate(model, source, classifier, *, num: int, batch_size: int = 8, features=None, transform=None,
             perceptual=None, progress: bool = True) -> dict[str, Any]:
    """The LOMIT results (module doc) of a `trained.TrainedModel` on the first `num` records of the attribute
    source `source`, centre-cropped by `transform` (default: the run's data config's sizes), judged by the
    attribute `classifier` (`classifier.predict`)."""
    from tqdm import tqdm

    from instagan_jax.data.attributes import transform_example
    from instagan_jax.data.transforms import TransformConfig
    from instagan_jax.methods.lomit import classifier as classifiers
    from instagan_jax.methods.lomit.networks import upsample_mask
    from instagan_jax.methods.lomit.step import translate
    from instagan_jax.nn.build import x64_scope

    if transform is None:
        d = model.config.data
        transform = TransformConfig(load_size=d.load_size, crop_size=d.crop_size, flip=False, ins_max=1)
    count = min(num, len(source))
    if count < 1:
        raise ValueError(f"the held-out data has no records ({source!r})")
    attributes = tuple(source.attributes)
    examples: dict[int, dict[str, Any]] = {}

    def example(index: int) -> dict[str, Any]:
        if index not in examples:
            examples[index] = transform_example(source[index], transform, None)
        return examples[index]

    masks, done = MaskTally(), 0
    logits = {"real": [], "translated": []}
    labels = {"input": [], "exemplar": []}
    real_features, fake_features = [], []
    with x64_scope(model.config.model.dtype), tqdm(total=count, desc="eval lomit", unit="img",
                                                  disable=not progress) as bar:
        for indices in batches(count, min(batch_size, count)):
            n = min(len(indices), count - done)
            inputs = [example(i) for i in indices]
            exemplars = [example((i + 1) % count) for i in indices]
            img, exemplar = (np.stack([e["img"] for e in group]) for group in (inputs, exemplars))
            out = translate(model.networks["G"], img, exemplar)
            fake = np.asarray(out["output"], np.float32)[:n]
            soft = np.asarray(upsample_mask(out["mask"], img.shape[1], img.shape[2]))[:n, ..., 0]
            img = img[:n]
            has_mask = np.array([e["has_mask"] for e in inputs[:n]], bool)
            if has_mask.any():
                true = np.stack([e["mask"] for e in inputs[:n]])[..., 0] > 0.5
                masks.add(img[has_mask], fake[has_mask], soft[has_mask], true[has_mask], perceptual)
            logits["real"].append(classifiers.predict(classifier, img))
            logits["translated"].append(classifiers.predict(classifier, fake))
            labels["input"].append(np.stack([e["labels"] for e in inputs[:n]]))
            labels["exemplar"].append(np.stack([e["labels"] for e in exemplars[:n]]))
            if features is not None:
                real_features.append(features(img))
                fake_features.append(features(fake))
            for i in indices:  # the next batch needs only its own records and the one after
                if i != 0:
                    examples.pop(i, None)
            done += n
            bar.update(n)
    logits = {k: np.concatenate(v) for k, v in logits.items()}
    labels = {k: np.concatenate(v) for k, v in labels.items()}
    results: dict[str, Any] = {"images": count, "images_with_masks": masks.images, "attributes": list(attributes),
                               "exemplar": "the next held-out image (index i + 1 mod n)"}
    if masks.images:
        results.update({key: value for key, value in masks.summary().items() if key != "images"})
    else:
        results.update({"mask": None, "background": None, "object": None})
    results["accuracy"] = {
        "classifier_on_real": accuracy(logits["real"], labels["input"], attributes),
        "translated_vs_exemplar": accuracy(logits["translated"], labels["exemplar"], attributes),
        "input_vs_exemplar": accuracy(logits["real"], labels["exemplar"], attributes),
    }
    if features is not None:
        results.update(feature_distances(np.concatenate(fake_features), np.concatenate(real_features)))
    return results


def training_data(run_data, evaluated, given: set[str]):
    """The DataConfig of the run's training split, for the classifier: the evaluated config (with the user's
    --data overrides, e.g. a moved root) but with the run's own `seed` and `phase`, which pick the split."""
    options = dict(evaluated.options)
    for key in ("seed", "phase"):
        if key in run_data.options:
            options[key] = run_data.options[key]
        else:
            options.pop(key, None)
    return dataclasses.replace(evaluated, options=options)


def describe(data) -> dict[str, Any]:
    """A data config as JSON-ready fields (the classifier's cache key)."""
    return {"kind": data.kind, "options": dict(data.options),
            "load_size": None if data.load_size is None else list(data.load_size), "crop_size": list(data.crop_size)}


def evaluate_run(model, request, settings=None) -> dict[str, Any]:
    """LOMIT's `Method.evaluate`: {'data', 'units', 'lomit', 'notes'} of a loaded run on the held-out data of
    `request` (`methods.base.EvalRequest`); the attribute classifier (`classifier.ClassifierSettings`, default
    `settings`) is cached in `request.classifier_dir` (default RUN/eval/attribute_classifier)."""
    from instagan_jax.data.transforms import TransformConfig
    from instagan_jax.methods.lomit import classifier as classifiers

    data = request.data
    source = open_data(data, "attributes")
    if len(source.attributes) != model.config.model.n_attributes:
        raise ValueError(f"--data: the held-out data labels {len(source.attributes)} attribute(s) "
                         f"{list(source.attributes)}, the run was trained with model.n_attributes = "
                         f"{model.config.model.n_attributes}")
    train_data = training_data(model.config.data, data, request.given)
    train_source = open_data(train_data, "attributes")
    if tuple(train_source.attributes) != tuple(source.attributes):
        raise ValueError(f"the training data's attributes {list(train_source.attributes)} differ from the "
                         f"held-out data's {list(source.attributes)}")
    directory = (Path(request.classifier_dir) if request.classifier_dir is not None
                 else request.run / "eval" / CLASSIFIER_FOLDER)
    transform = TransformConfig(load_size=data.load_size, crop_size=data.crop_size, flip=False, ins_max=1)
    classifier, info = classifiers.cached_classifier(directory, train_source, transform, describe(train_data),
                                                     settings or classifiers.ClassifierSettings())
    results = evaluate(model, source, classifier, num=request.num, batch_size=request.batch_size,
                       features=request.features, transform=transform, perceptual=request.perceptual,
                       progress=request.progress)
    results["classifier"] = {**info, "trained_on": describe(train_data)}
    notes = []
    if results["mask"] is None:
        notes.append(NO_MASKS.format(kind=data.kind))
    weak = [name for name, value in results["accuracy"]["classifier_on_real"]["per_attribute"].items()
            if value is not None and value < TRUSTED_ACCURACY]
    if weak:
        notes.append(f"the attribute classifier scores under {TRUSTED_ACCURACY} on real held-out images for "
                     f"{', '.join(weak)}: its verdicts on translations are unreliable there")
    return {
        "data": {"kind": data.kind, "options": dict(data.options), "split": request.split, "crop_size": list(data.crop_size),
                 "attributes": list(source.attributes)},
        "units": {"background.l1": "mean |translation - input| in 0-255 units, outside the true mask",
                  "background.psnr_db": "dB, peak 255, outside the true mask",
                  "object": "the same inside the true mask",
                  "mask": f"the input's learned mask, bilinearly upsampled, object where > {MASK_THRESHOLD}",
                  "accuracy": "share of images (logit > 0 = attribute present)"},
        "lomit": results,
        "notes": notes,
    }


def table_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    """The LOMIT results as (label, value) rows, with a header row."""
    r = results["lomit"]
    rows = [("", "value"), ("images (with true masks)", f"{r['images']} ({r['images_with_masks']})")]
    if r["mask"] is not None:
        m = r["mask"]
        rows += [
            (f"learned-mask IoU mean [q25 median q75] (> {m['threshold']})", quartiles(m["iou"])),
            ("  all-ones mask IoU (baseline) mean [q25 median q75]", quartiles(m["iou_all_ones"])),
            ("learned mask mean inside / outside the true mask",
             f"{number(m['mean_inside'])} / {number(m['mean_outside'])}"),
            ("background L1 outside the true mask (0-255)", number(r["background"]["l1"], 2)),
            ("background PSNR outside the true mask (dB)", number(r["background"]["psnr_db"], 2)),
            ("PSNR inside the true mask (dB, object change)", number(r["object"]["psnr_db"], 2)),
        ]
        if "lpips_background" in r:
            rows.append(("background LPIPS mean [q25 median q75]", quartiles(r["lpips_background"])))
    else:
        rows += [("mask / background metrics", "- (no true masks)")]
    acc = r["accuracy"]
    trained = "trained now" if r["classifier"]["trained_now"] else "cached"
    rows.append((f"attribute classifier ({trained}, {r['classifier']['train_images']} training images)", ""))
    for label, key in (("  accuracy on real held-out x1 vs y1", "classifier_on_real"),
                       ("  translation x12 vs exemplar labels y2", "translated_vs_exemplar"),
                       ("  baseline: input x1 vs y2", "input_vs_exemplar")):
        cells = [f"{name} {number(value)}" for name, value in acc[key]["per_attribute"].items()]
        rows.append((label, ", ".join(cells + [f"all {number(acc[key]['all'])}"])))
    if results.get("feature_network"):
        rows += [("FID", number(r.get("fid"), 2)),
                 ("KID mean (std)", f"{number(r['kid']['mean'], 4)} ({number(r['kid']['std'], 4)})"
                  if r.get("kid") else "-")]
    return rows
