"""The contract between a method and everything else: `Method` and the records it hands out.

The commands (`instagan train / translate / eval / convert`) and the training loop reach a method only
through its `Method` record; nothing outside `instagan_jax/methods/` compares method names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from instagan_jax.config import TrainConfig
from instagan_jax.nn.build import ModelConfig
from instagan_jax.nn.losses import LossWeights

# What a method's batch holds (all arrays batch-first, images NHWC in [-1, 1]):
#   "sets":   unpaired img_A, img_B with instance masks masks_A, masks_B (B,K,H,W,1) and valid_A, valid_B (B,K)
#   "images": unpaired img_A, img_B
#   "paired": aligned img_A (input) and img_B (target)
#   "attributes": img (B,H,W,3) with multi-label attributes labels (B,C) in {0, 1} (LOMIT)
DATA_KINDS = ("sets", "images", "paired", "attributes")
DIRECTIONS = ("AtoB", "BtoA")
EVAL_EXTRAS = ("fid_weights", "lpips", "classifier_dir")  # optional `instagan eval` inputs a method may take


@dataclasses.dataclass(frozen=True)
class Sections:
    """A method's own config section classes (subclasses of the shared ones, with its fields)."""

    model: type = ModelConfig
    loss: type = LossWeights
    train: type = TrainConfig

    def as_dict(self) -> dict[str, type]:
        return {"model": self.model, "loss": self.loss, "train": self.train}


@dataclasses.dataclass(frozen=True)
class TranslateRules:
    """What `instagan translate` accepts for a method, checked before any network loads."""

    directions: tuple[str, ...] = DIRECTIONS
    masks: bool = False  # translates instance masks with the image (they are read with the inputs)
    exemplar: bool = False  # needs --exemplar (an image whose style every input takes)
    user_mask: bool = False  # takes --user-mask
    ins_per: bool = False  # takes --ins-per (instances per group)
    size_multiple: int = 4  # the network's input sides must be multiples of this


@dataclasses.dataclass(frozen=True)
class TranslateOptions:
    """A user's translation request: the direction, and what the method's rules let them give."""

    direction: str = "AtoB"
    ins_per: int | None = None
    exemplar: np.ndarray | None = None  # RGB uint8 (H, W, 3)
    user_mask: np.ndarray | None = None  # uint8 (H, W), white = translate
    size: tuple[int, int] | None = None  # network input size (default: the run's crop size)


@dataclasses.dataclass(frozen=True)
class Translator:
    """A trained method's one inference path, as `eval` and `translate` call it:
    `translator(img (B,H,W,3), slots (B,K,H,W,1)) -> (image, masks or None)`, images in [-1, 1], the
    slots in translation order (largest first); `masks`: whether it translates them; `about`: a few
    words for the log (e.g. '2 instance(s) per group'). Its size rule is the method's
    `TranslateRules.size_multiple`."""

    call: Callable[[Any, Any], tuple[Any, Any]]
    masks: bool
    about: str = ""

    def __call__(self, img, slots):
        return self.call(img, slots)


@dataclasses.dataclass(frozen=True)
class EvalRequest:
    """What `instagan eval` asks of a method's `evaluate`: the held-out data config and its description,
    the option names the user set (`--data`), how many images, and the optional measures (None: off)."""

    run: Path
    data: Any  # config.DataConfig of the held-out data
    split: str
    given: frozenset[str]
    num: int
    batch_size: int
    features: Any = None  # fid.FeatureNetwork
    perceptual: Any = None  # perceptual LPIPS distance
    classifier_dir: Path | None = None
    progress: bool = True


@dataclasses.dataclass(frozen=True)
class Reference:
    """How a method's networks map to the PyTorch reference's checkpoints `<epoch>_net_<NET>.pth`.

    - `networks`: the file suffixes, in order; `required`: those that must have a file (the others start fresh);
    - `infer_model(state_dicts, model)`: the model section with what the weights show (widths, depth);
    - `state_from_torch(spec, state_dicts, seed)`: a step-0 train state holding them (KeyError or
      ValueError naming the network and key that do not fit);
    - `to_torch(spec, state)`: a train state's networks as state_dicts {network: {key: array}};
    - `describes`: the reference classes, for messages;
    - `model`: the reference's `--model` name, which a parity fixture's JSON gives (InstaGAN's: none);
    - `parity`: the module whose `run_parity(path, notes)` checks such a fixture (`instagan parity`).
    """

    networks: tuple[str, ...]
    required: tuple[str, ...]
    infer_model: Callable[[Mapping[str, Mapping[str, np.ndarray]], Any], Any]
    state_from_torch: Callable[[Any, Mapping[str, Mapping[str, np.ndarray]], int], Any]
    to_torch: Callable[[Any, Any], dict[str, dict[str, np.ndarray]]]
    describes: str
    model: str = ""
    parity: str = ""


def a_run(titles: list[str] | str) -> str:
    """'a LOMIT run', 'an InstaGAN run', 'a CycleGAN or pix2pix run': method titles in a message."""
    title = " or ".join(titles) if isinstance(titles, list) else titles
    return f"{'an' if title[:1].lower() in 'aeiou' else 'a'} {title} run"


def _no_translator(model, options: TranslateOptions) -> Translator:
    raise ValueError(f"{a_run(model.config.method)} cannot translate")


def _no_evaluation(model, request: EvalRequest) -> dict:
    raise ValueError(f"{a_run(model.config.method)} has no evaluation")


@dataclasses.dataclass(frozen=True)
class Method:
    """All that the loop, checkpoints and the commands need of a method.

    Training:
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
    After training:
    - `translate`: the rules of `instagan translate`; `translator(model, options)`: the one inference path;
    - `evaluate(model, request)`: the results of `instagan eval` beside the generic header ("data",
      "units", and "directions" or the method's own section); `table_rows(results)`: them as table rows;
      `eval_extras`: which of EVAL_EXTRAS it takes;
    - `reference`: its PyTorch reference mapping (None: no reference here).
    Config: `sections`, its own model, loss and train classes (a key of another method's is an error);
    `check_data(config, source)`: ValueError where opened data does not fit the config (default: none).
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
    title: str = ""  # the name in prose (e.g. "InstaGAN"); default: `name`
    translate: TranslateRules = TranslateRules()
    translator: Callable[[Any, TranslateOptions], Translator] = _no_translator
    evaluate: Callable[[Any, EvalRequest], dict] = _no_evaluation
    table_rows: Callable[[dict], list] | None = None  # None: the generic per-direction table
    eval_extras: frozenset[str] = frozenset({"fid_weights", "lpips"})
    reference: Reference | None = None
    sections: Sections = Sections()
    check_data: Callable[[Any, Any], None] = lambda config, source: None

    def __post_init__(self) -> None:
        if self.data not in DATA_KINDS:
            raise ValueError(f"method {self.name}: data must be one of {DATA_KINDS}, got {self.data!r}")
        if unknown := set(self.eval_extras) - set(EVAL_EXTRAS):
            raise ValueError(f"method {self.name}: eval_extras {sorted(unknown)} not among {EVAL_EXTRAS}")
        if not self.title:
            object.__setattr__(self, "title", self.name)


def unpaired_evaluation(translator: Callable[[Any, TranslateOptions], Translator]):
    """A `Method.evaluate` for unpaired domains: both directions through `translator`
    (`eval.translation.evaluate_unpaired`)."""

    def evaluate(model, request: EvalRequest) -> dict:
        from instagan_jax.eval.translation import evaluate_unpaired

        return evaluate_unpaired(model, request, {d: translator(model, TranslateOptions(direction=d))
                                                  for d in DIRECTIONS})

    return evaluate


def paired_evaluation(translator: Callable[[Any, TranslateOptions], Translator]):
    """A `Method.evaluate` for aligned pairs: A -> B through `translator` against the targets
    (`eval.translation.evaluate_paired`)."""

    def evaluate(model, request: EvalRequest) -> dict:
        from instagan_jax.eval.translation import evaluate_paired

        return evaluate_paired(model, request, translator(model, TranslateOptions()))

    return evaluate


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
