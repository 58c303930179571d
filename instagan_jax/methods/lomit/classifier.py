"""The attribute classifier that judges LOMIT's translations in `instagan eval` (docs/EVAL.md, "LOMIT").

A small CNN (3x3 stride-2 convs with ReLU, a global mean pool, a dense layer to one logit per attribute),
trained with binary cross-entropy and Adam on REAL images of the run's training split, never on the
held-out images it is scored on, and independent of the run's discriminator. Its settings are fixed
(`ClassifierSettings`), so a run's classifier is a pure function of the run's training data.

    classifier, info = cached_classifier(RUN / "eval" / "attribute_classifier", source, transform, data)
    logits = predict(classifier, images)        # (N, C); attribute present where the logit is > 0

It is cached as `params.npz` (the parameters) beside `settings.json` (the data config and settings it was
trained with); a cache whose settings differ from the wanted ones is retrained and overwritten.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

FORMAT = "instagan-jax attribute-classifier v1"
PARAMS_FILE, SETTINGS_FILE = "params.npz", "settings.json"


@dataclasses.dataclass(frozen=True)
class ClassifierSettings:
    """How the classifier is built and trained (part of the cache key)."""

    widths: tuple[int, ...] = (16, 32, 64, 64)  # channels of the 3x3 stride-2 convs
    steps: int = 400
    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0
    max_images: int = 2000  # the first this many records of the training split


class AttributeClassifier(nnx.Module):
    """Images (B, H, W, 3) in [-1, 1] -> attribute logits (B, C)."""

    def __init__(self, n_attributes: int, widths: tuple[int, ...] = ClassifierSettings.widths, *, rngs: nnx.Rngs):
        channels = (3, *widths)
        self.convs = nnx.List([nnx.Conv(a, b, (3, 3), strides=2, padding="SAME", rngs=rngs)
                               for a, b in zip(channels[:-1], channels[1:])])
        self.out = nnx.Linear(channels[-1], n_attributes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return self.out(jnp.mean(x, axis=(1, 2)))


def bce(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy with logits, averaged over samples and attributes."""
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, labels))


def abstract(n_attributes: int, widths: tuple[int, ...]) -> AttributeClassifier:
    """The classifier's structure, with shapes but no values."""
    return nnx.eval_shape(lambda: AttributeClassifier(n_attributes, tuple(widths), rngs=nnx.Rngs(0)))


def build(n_attributes: int, settings: ClassifierSettings) -> AttributeClassifier:
    """A fresh classifier: He-normal kernels and zero biases drawn with NumPy from `settings.seed` (eager
    JAX init takes seconds)."""
    graphdef, params = nnx.split(abstract(n_attributes, settings.widths), nnx.Param)
    rng = np.random.default_rng([settings.seed, 0])

    def draw(path, leaf):
        if jax.tree_util.keystr(path).endswith("['bias']") or len(leaf.shape) < 2:
            return jnp.zeros(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return jnp.asarray(rng.normal(0.0, np.sqrt(2.0 / fan_in), leaf.shape), leaf.dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(draw, params))


def load_examples(source, count: int, transform) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, H, W, 3), labels float32 (N, C)) of the first `count` records of an attribute
    source, centre-cropped as `transform` says (uint8 keeps a large training set small)."""
    from instagan_jax.data.attributes import transform_example

    images, labels = [], []
    for index in range(count):
        example = transform_example(source[index], transform, None)
        images.append(np.clip(np.rint((example["img"] + 1.0) * 127.5), 0, 255).astype(np.uint8))
        labels.append(example["labels"])
    return np.stack(images), np.stack(labels)


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [-1, 1]."""
    return images.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


@functools.lru_cache(maxsize=4)
def _training_step(graphdef: nnx.GraphDef, lr: float):
    """(Adam, one compiled BCE step `(params, opt_state, x, y) -> (params, opt_state, loss)`), kept so that
    another classifier of the same structure and learning rate does not compile again."""
    optimizer = optax.adam(lr)

    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(lambda p: bce(nnx.merge(graphdef, p)(x), y))(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return optimizer, step


def train(images: np.ndarray, labels: np.ndarray, settings: ClassifierSettings,
          log: Callable[[str], None] = print) -> AttributeClassifier:
    """A classifier trained on uint8 `images` with 0/1 `labels`: `settings.steps` Adam steps on batches drawn
    with replacement (and flipped left-right at random) by a generator seeded by `settings.seed`."""
    graphdef, params = nnx.split(build(labels.shape[1], settings), nnx.Param)
    optimizer, step = _training_step(graphdef, settings.lr)
    opt_state = optimizer.init(params)
    rng = np.random.default_rng([settings.seed, 1])
    start, every, losses = time.perf_counter(), max(1, settings.steps // 4), []
    for i in range(settings.steps):
        pick = rng.integers(0, len(images), settings.batch_size)
        x = to_float(images[pick])
        flip = rng.random(settings.batch_size) < 0.5
        x[flip] = x[flip, :, ::-1]
        params, opt_state, loss = step(params, opt_state, jnp.asarray(x), jnp.asarray(labels[pick]))
        losses.append(loss)
        if (i + 1) % every == 0 or i + 1 == settings.steps:
            log(f"attribute classifier: step {i + 1}/{settings.steps}, loss {float(np.mean(losses)):.4f} "
                f"({time.perf_counter() - start:.1f} s)")
            losses = []
    return nnx.merge(graphdef, params)


@jax.jit
def _logits(model: AttributeClassifier, x: jax.Array) -> jax.Array:
    return model(x)


def predict(model: AttributeClassifier, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Logits (N, C) of float images (N, H, W, 3) in [-1, 1] (uint8 images are converted)."""
    images = to_float(images) if images.dtype == np.uint8 else np.asarray(images, np.float32)
    out = [np.asarray(_logits(model, jnp.asarray(images[i : i + batch_size])))
           for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.out.out_features), np.float32)


def _flat(params: nnx.State) -> dict[str, np.ndarray]:
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def save(directory: Path, model: AttributeClassifier, key: dict[str, Any]) -> None:
    """Write the parameters, then the settings (the file that says the cache is complete), atomically."""
    from instagan_jax.visuals import _write_atomically, write_text

    buffer = io.BytesIO()
    np.savez(buffer, **_flat(nnx.state(model, nnx.Param)))
    _write_atomically(directory / PARAMS_FILE, lambda tmp: tmp.write_bytes(buffer.getvalue()))
    write_text(directory / SETTINGS_FILE, json.dumps(key, indent=2) + "\n")


def load(directory: Path, key: dict[str, Any]) -> AttributeClassifier | None:
    """The cached classifier if its settings file equals `key` and its parameters fit; else None."""
    try:
        saved = json.loads((directory / SETTINGS_FILE).read_text())
        if saved != key:
            return None
        graphdef, params = nnx.split(abstract(key["n_attributes"], tuple(key["settings"]["widths"])), nnx.Param)
        with np.load(directory / PARAMS_FILE) as archive:
            arrays = dict(archive)
        leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
        names = [jax.tree_util.keystr(path) for path, _ in leaves]
        if set(names) != set(arrays) or any(arrays[n].shape != leaf.shape for n, (_, leaf) in zip(names, leaves)):
            return None
        return nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, [jnp.asarray(arrays[n]) for n in names]))
    except (OSError, ValueError, KeyError, TypeError):  # missing or damaged: retrain
        return None


def cache_key(data: dict[str, Any], attributes: tuple[str, ...], settings: ClassifierSettings,
              images: int) -> dict[str, Any]:
    """What a cached classifier must have been trained with to be reused (JSON-ready)."""
    return json.loads(json.dumps({"format": FORMAT, "data": data, "attributes": list(attributes),
                                  "n_attributes": len(attributes), "train_images": images,
                                  "settings": dataclasses.asdict(settings)}))


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cached_classifier(directory: str | Path, source, transform, data: dict[str, Any],
                      settings: ClassifierSettings = ClassifierSettings(),
                      log: Callable[[str], None] = stderr_log) -> tuple[AttributeClassifier, dict[str, Any]]:
    """(classifier, info) for the attribute source `source` of the run's training split (described by `data`,
    the JSON-ready data config): the one cached in `directory` if it was trained with the same data and
    settings, else a new one, trained and cached there."""
    directory = Path(directory)
    count = min(len(source), settings.max_images)
    key = cache_key(data, tuple(source.attributes), settings, count)
    info = {"path": str(directory.resolve()), "train_images": count, "settings": key["settings"]}
    model = load(directory, key)
    if model is not None:
        log(f"attribute classifier: reusing {directory} (same data and settings)")
        return model, {**info, "trained_now": False}
    log(f"attribute classifier: training on {count} real images of the run's training data "
        f"({settings.steps} steps of batch {settings.batch_size}); cached in {directory}")
    images, labels = load_examples(source, count, transform)
    model = train(images, labels, settings, log)
    save(directory, model, key)
    return model, {**info, "trained_now": True}
