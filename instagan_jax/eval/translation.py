"""A method's translator scored on held-out data: unpaired domains both ways, or aligned pairs one way.

    results = evaluate_unpaired(model, request, translators)   # {"data", "units", "directions"}
    results = evaluate_paired(model, request, translator)

`translators` maps a direction ('AtoB', 'BtoA') to the method's `methods.base.Translator`, the one
`instagan translate` uses; the input masks are ordered largest first, as translation orders them.
Per direction (AtoB: domain A translated): background preservation outside the input (and translated)
masks, mask agreement when the translator translates masks, shapes on shapes data, FID/KID with a
feature network, LPIPS with `request.perceptual`. Paired: the output against its target.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from instagan_jax.data.sources import open_data
from instagan_jax.data.transforms import TransformConfig, transform_record
from instagan_jax.eval.metrics import DOMAINS, Tally, batches, feature_distances, shape_summary
from instagan_jax.nn import instances
from instagan_jax.nn.build import x64_scope

UNITS = {"background.l1": "mean |output - input| in 0-255 units", "background.psnr_db": "dB, peak 255"}


def _transform(config) -> TransformConfig:
    """Centre crops at the run's size, its `train.ins_max` largest instances, no flips."""
    d = config.data
    return TransformConfig(load_size=d.load_size, crop_size=d.crop_size, flip=False, ins_max=config.train.ins_max)


def _describe(config, request) -> dict[str, Any]:
    data = request.data
    return {"kind": data.kind, "options": dict(data.options), "split": request.split,
            "crop_size": list(data.crop_size), "ins_max": config.train.ins_max}


def translate_source(translate, source, count: int, *, transform, batch_size: int, shapes: bool,
                     features=None, perceptual=None, bar=None) -> Tally:
    """Translate the first `count` records of `source` in batches and tally the metrics."""
    tally = Tally()
    for indices in batches(count, min(batch_size, count)):
        examples = [transform_record(source[i], transform) for i in indices]
        img, masks = np.stack([e["img"] for e in examples]), np.stack([e["masks"] for e in examples])
        n = min(len(indices), count - tally.images)
        selected, valid = (np.asarray(a) for a in instances.select_largest(masks, masks.shape[1]))
        fake_img, fake_masks = translate(img, selected)
        fake_img = np.asarray(fake_img)[:n]
        fake_masks = None if fake_masks is None else np.asarray(fake_masks)[:n]
        tally.add(img[:n], selected[:n], valid[:n], fake_img, fake_masks, shapes, perceptual)
        if features is not None:
            tally.real_features.append(features(img[:n]))
            tally.fake_features.append(features(fake_img))
        if bar is not None:
            bar.update(n)
    return tally


def evaluate_unpaired(model, request, translators: dict) -> dict[str, Any]:
    """Both directions of a trained run (`trained.TrainedModel`) on the held-out domains of `request`
    (`methods.base.EvalRequest`), with `translators` {direction: Translator}."""
    from tqdm import tqdm

    sources = dict(zip("AB", open_data(request.data, "sets")))
    shapes = request.data.kind == "shapes"
    masks = all(t.masks for t in translators.values())
    counts = {domain: min(request.num, len(sources[domain])) for domain in sources}
    tallies = {}
    with x64_scope(model.config.model.dtype), tqdm(total=sum(counts.values()), desc="eval", unit="img",
                                                  disable=not request.progress) as bar:
        for direction, (source, _) in DOMAINS.items():
            bar.set_description(f"eval {direction}")
            tallies[direction] = translate_source(
                translators[direction], sources[source], counts[source], transform=_transform(model.config),
                batch_size=request.batch_size, shapes=shapes, features=request.features,
                perceptual=request.perceptual, bar=bar)
    results = {direction: tallies[direction].summary(target, shapes, masks) for direction, (_, target) in DOMAINS.items()}
    for direction, other in (("AtoB", "BtoA"), ("BtoA", "AtoB")):  # real target data = the other's inputs
        target = DOMAINS[direction][1]
        if shapes and masks:
            results[direction]["shape"]["target_real"] = shape_summary(np.array(tallies[other].shape_in), target)
        if shapes:
            results[direction]["image_shape"]["target_real"] = shape_summary(np.array(tallies[other].segmented_in),
                                                                             target)
        if request.features is not None:
            results[direction].update(feature_distances(np.concatenate(tallies[direction].fake_features),
                                                        np.concatenate(tallies[other].real_features)))
    return {"data": _describe(model.config, request), "units": UNITS, "directions": results}


def evaluate_paired(model, request, translator) -> dict[str, Any]:
    """AtoB of a paired run on the first `request.num` held-out aligned pairs, centre-cropped: the
    output against its target, the background outside the input's objects, and (shapes) the shape of
    each object as segmented from the output (the masks come from the input's record)."""
    from tqdm import tqdm

    pairs = open_data(request.data, "paired")
    shapes = request.data.kind == "shapes"
    transform = _transform(model.config)
    count, tally = min(request.num, len(pairs)), Tally()
    with x64_scope(model.config.model.dtype), tqdm(total=count, desc="eval AtoB", unit="img",
                                                  disable=not request.progress) as bar:
        for indices in batches(count, min(request.batch_size, count)):
            examples = [[transform_record(record, transform) for record in pairs[i]] for i in indices]
            n = min(len(indices), count - tally.images)
            img, target = (np.stack([e[side]["img"] for e in examples])[:n] for side in (0, 1))
            masks = {side: [np.asarray(a) for a in instances.select_largest(
                np.stack([e[side]["masks"] for e in examples])[:n], transform.ins_max)] for side in (0, 1)}
            fake = np.asarray(translator(img, masks[0][0])[0])
            tally.add(img, *masks[0], fake, None, shapes, request.perceptual)
            tally.add_target(fake, target, *masks[1], shapes)
            bar.update(n)
    return {"data": _describe(model.config, request), "units": UNITS,
            "directions": {"AtoB": tally.summary("B", shapes, masks=False)}}
