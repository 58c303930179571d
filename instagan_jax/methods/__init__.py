"""The translation methods, side by side, behind one small interface (`Method`).

    from instagan_jax import methods
    method = methods.get("cyclegan")          # "instagan" | "cyclegan" | "pix2pix" | "lomit"
    spec = method.make_spec(config, iters_per_epoch)
    state = method.init_state(spec, seed)
    state, metrics, visuals = method.train_step(spec, state, batch)   # pure, jittable

The training loop (`instagan_jax.loop`) knows only this interface; shared layers live in
`instagan_jax.nn`. Each method is a module here that defines `METHOD`.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

# What a method's batch holds (all arrays batch-first, images NHWC in [-1, 1]):
#   "sets":   unpaired img_A, img_B with instance masks masks_A, masks_B (B,K,H,W,1) and valid_A, valid_B (B,K)
#   "images": unpaired img_A, img_B
#   "paired": aligned img_A (input) and img_B (target)
#   "attributes": img (B,H,W,3) with multi-label attributes labels (B,C) in {0, 1} (LOMIT)
DATA_KINDS = ("sets", "images", "paired", "attributes")


@dataclasses.dataclass(frozen=True)
class Method:
    """What the training loop, checkpoints, `translate` and `eval` need of a method.

    - `make_spec(config, iters_per_epoch)`: everything static about an iteration (hashable: a jit key);
    - `init_state(spec, seed)`: a fresh train state, a pytree with `.step` (iterations done) and
      `.params` (trainable parameters by network name);
    - `train_step(spec, state, batch)`: one iteration, pure -> (state, metrics, visuals). Metrics are
      arrays (scalars, or per mask group); visuals map a row label to {column label: (B,H,W,C) image
      in [-1, 1], C = 1 or 3};
    - `summarize(metrics)`: one iteration's metrics (host arrays) -> the scalars to log;
    - `modules(spec, state)`: the networks of a state as NNX modules, by name;
    - `visual_rows(visuals)`: the sample grid's rows {row label: {column label: images}}, in order
      (a jitted step returns its dicts with sorted keys).
    """

    name: str
    networks: tuple[str, ...]
    data: str
    make_spec: Callable[[Any, float], Any]
    init_state: Callable[[Any, int], Any]
    train_step: Callable[[Any, Any, dict], tuple[Any, dict, dict]]
    summarize: Callable[[dict], dict[str, float]]
    modules: Callable[[Any, Any], dict]
    visual_rows: Callable[[Any], dict] = lambda visuals: visuals

    def __post_init__(self) -> None:
        if self.data not in DATA_KINDS:
            raise ValueError(f"method {self.name}: data must be one of {DATA_KINDS}, got {self.data!r}")


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    """What is static about an iteration of an image method (hashable: the jit cache key): the config's
    own `model`, `loss` and `train` sections, the training image size, iterations per epoch (for the
    learning-rate policy). Methods subclass it with their checks and graph definitions."""

    model: Any
    loss: Any
    train: Any
    height: int
    width: int
    iters_per_epoch: float = 1.0

    @classmethod
    def from_config(cls, config: Any, iters_per_epoch: float = 1.0):
        """The spec of a run's config (image size = `data.crop_size`)."""
        height, width = config.data.crop_size
        return cls(config.model, config.loss, config.train, height, width, float(iters_per_epoch))


NAMES = ("instagan", "cyclegan", "pix2pix", "lomit")


def get(name: str) -> Method:
    """The method called `name`; ValueError listing the known ones."""
    if name not in NAMES:
        raise ValueError(f"unknown method {name!r}: choose one of {', '.join(NAMES)}")
    return importlib.import_module(f"instagan_jax.methods.{name}").METHOD
