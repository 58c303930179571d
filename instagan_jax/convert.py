"""Map PyTorch reference state_dicts (`{key: array}`, NCHW/OIHW layout) to our modules and back.

Generator keys look like `encoder_img.10.conv_block.1.weight`, discriminator keys like
`feature_seg.0.module.weight_bar` (REFERENCE.md §1-2). Conv weights are OIHW in PyTorch and HWIO
here; ConvTranspose2d weights are (in, out, kh, kw) in PyTorch and (kh, kw, in, out) here.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from instagan_jax.checkpoint import Checkpoints, saved_steps
from instagan_jax.config import Config, validate
from instagan_jax.loop import check_workdir, step_spec
from instagan_jax.methods.instagan import step as training
from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
from instagan_jax.nn.build import ModelConfig, abstract, x64_scope
from instagan_jax.trained import networks_from_state, restore_state, saved_config

NETWORKS = training.GENERATORS + training.DISCRIMINATORS
TORCH_EXTRA = "pip install 'instagan-jax[torch]' (in a checkout: pip install -e '.[torch]')"

_ENCODER_LAYERS = {"stem": 1, "down1": 4, "down2": 7}
_DECODER_LAYERS = {"up1": 0, "up2": 3, "head": 7}
_BLOCK_CONVS = {"conv1": 1, "conv2": 5}
_FEATURE_LAYERS = {"conv1": 0, "conv2": 2, "conv3": 5}
_CLASSIFIER_LAYERS = {"classifier1": "classifier.0", "classifier2": "classifier.3"}
_SN_LEAVES = {"bias": "bias", "u": "weight_u", "v": "weight_v", "kernel": "weight_bar"}


def _generator_key(path: tuple) -> str:
    """Our generator state path -> reference state_dict key."""
    net, *rest, leaf = path
    suffix = "weight" if leaf == "kernel" else "bias"
    if net.startswith("encoder"):
        if rest[0] == "blocks":
            return f"{net}.{10 + rest[1]}.conv_block.{_BLOCK_CONVS[rest[2]]}.{suffix}"
        return f"{net}.{_ENCODER_LAYERS[rest[0]]}.{suffix}"
    return f"{net}.{_DECODER_LAYERS[rest[0]]}.{suffix}"


def _discriminator_key(path: tuple) -> str:
    """Our discriminator state path -> reference state_dict key."""
    if path[0] in _CLASSIFIER_LAYERS:
        prefix = _CLASSIFIER_LAYERS[path[0]]
    else:
        prefix = f"{path[0]}.{_FEATURE_LAYERS[path[1]]}"
    return f"{prefix}.module.{_SN_LEAVES[path[-1]]}"


def _is_transposed(path: tuple) -> bool:
    return path[-2] in ("up1", "up2")


def _to_torch_layout(path: tuple, value: np.ndarray) -> np.ndarray:
    if path[-1] != "kernel":
        return value
    return value.transpose(2, 3, 0, 1) if _is_transposed(path) else value.transpose(3, 2, 0, 1)


def _from_torch_layout(path: tuple, value: np.ndarray) -> np.ndarray:
    if path[-1] != "kernel":
        return value
    return value.transpose(2, 3, 0, 1) if _is_transposed(path) else value.transpose(2, 3, 1, 0)


def _key_fn(model: nnx.Module):
    if isinstance(model, SetGenerator):
        return _generator_key
    if isinstance(model, SetDiscriminator):
        return _discriminator_key
    raise TypeError(f"expected a SetGenerator or SetDiscriminator, got {type(model).__name__}")


_NET_ORDER = ("encoder_img", "encoder_seg", "decoder_img", "decoder_seg",
              "feature_img", "feature_seg", "classifier")
_LEAF_ORDER = ("weight", "bias", "weight_u", "weight_v", "weight_bar")


def _reference_sort_key(key: str) -> tuple:
    """The reference's state_dict order: module order, then weight/bias (SN: bias, u, v, weight_bar)."""
    parts = key.split(".")
    return (_NET_ORDER.index(parts[0]), [int(p) for p in parts[1:-1] if p.isdigit()],
            _LEAF_ORDER.index(parts[-1]))


def to_reference(model: nnx.Module) -> dict[str, np.ndarray]:
    """A reference-layout state_dict (numpy, the model's dtype, reference key order) of a G or D."""
    key_fn = _key_fn(model)
    flat = {key_fn(tuple(path)): _to_torch_layout(tuple(path), np.asarray(var[...]))
            for path, var in nnx.to_flat_state(nnx.state(model))}
    return {key: flat[key] for key in sorted(flat, key=_reference_sort_key)}


def strip_data_parallel_prefix(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop a leading `module.` that `nn.DataParallel` adds to every key, if all keys have it."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def load_reference(model: nnx.Module, state_dict: Mapping[str, np.ndarray]) -> None:
    """Overwrite a generator's or discriminator's state (SN u, v included) from a reference state_dict,
    cast to the model's dtype.

    Raises KeyError naming missing or unexpected keys and ValueError naming a key whose shape differs.
    """
    state_dict = strip_data_parallel_prefix(state_dict)
    key_fn = _key_fn(model)
    flat = [(tuple(path), var) for path, var in nnx.to_flat_state(nnx.state(model))]
    expected = {key_fn(path) for path, _ in flat}
    missing = sorted(expected - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected)
    if missing or unexpected:
        raise KeyError(f"{type(model).__name__} state_dict mismatch: missing {missing[:8]}"
                       f"{' ...' if len(missing) > 8 else ''}, unexpected {unexpected[:8]}"
                       f"{' ...' if len(unexpected) > 8 else ''}")
    for path, var in flat:
        key = key_fn(path)
        expected = var.get_value()
        value = _from_torch_layout(path, np.asarray(state_dict[key], dtype=expected.dtype))
        expected_shape = expected.shape
        if value.shape != expected_shape:
            torch_shape = np.asarray(state_dict[key]).shape
            raise ValueError(f"{key}: reference shape {torch_shape} does not fit this model "
                             f"(expects {_to_torch_layout(path, np.zeros(expected_shape)).shape}); "
                             "check ngf/ndf/n_blocks/image_channels")
        var.set_value(jnp.asarray(value))


class TorchMissingError(ImportError, RuntimeError):
    """PyTorch, needed to read or write `.pth` files, is not installed."""


def require_torch():
    """The `torch` module, or TorchMissingError saying how to install the optional extra."""
    try:
        import torch
    except ImportError as err:
        raise TorchMissingError(f"reading and writing PyTorch .pth files needs PyTorch: {TORCH_EXTRA}") from err
    return torch


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a reference `.pth` file into numpy arrays (needs the optional `torch` extra)."""
    torch = require_torch()
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path}: not a PyTorch state_dict file ({str(err).splitlines()[0]})") from err
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state_dict (a mapping of tensors), got {type(state).__name__}")
    if bad := [k for k, v in state.items() if not isinstance(v, torch.Tensor)]:
        raise ValueError(f"{path}: expected a state_dict of tensors; {bad[0]!r} holds a {type(state[bad[0]]).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def write_torch_state_dict(path: str | Path, state_dict: Mapping[str, np.ndarray]) -> Path:
    """Write numpy arrays as a `.pth` state_dict (keys in the given order), atomically."""
    torch = require_torch()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, str(tmp))  # a writable copy
    os.replace(tmp, path)
    return path


# --- the architecture a set of reference state_dicts shows -------------------------------------------

_BLOCK_KEY = re.compile(r"encoder_img\.(\d+)\.conv_block\.")


def _shape_of(name: str, state_dict: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise KeyError(f"{name}: no {key!r} in the state_dict: not a reference "
                       f"{'ResnetSetGenerator' if name in training.GENERATORS else 'NLayerSetDiscriminator'}")
    return tuple(np.shape(state_dict[key]))


def _dimensions(name: str, state_dict: Mapping[str, np.ndarray]) -> dict[str, tuple[int, str]]:
    """{model field: (value, where it was read)} of one network's state_dict."""
    if name in training.GENERATORS:
        key = "encoder_img.1.weight"  # (ngf, image channels, 7, 7)
        shape = _shape_of(name, state_dict, key)
        blocks = {int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k))}
        return {"ngf": (shape[0], f"{name} {key} {shape}"), "image_channels": (shape[1], f"{name} {key} {shape}"),
                "n_blocks": (len(blocks), f"{name} encoder_img.<10+i>.conv_block keys")}
    key = "feature_img.0.module.weight_bar"  # (ndf, image channels, 4, 4)
    shape = _shape_of(name, state_dict, key)
    return {"ndf": (shape[0], f"{name} {key} {shape}"), "image_channels": (shape[1], f"{name} {key} {shape}")}


def infer_model_config(state_dicts: Mapping[str, Mapping[str, np.ndarray]],
                       base: ModelConfig = ModelConfig()) -> ModelConfig:
    """`base` with ngf, n_blocks, image_channels and (given a discriminator) ndf read off reference
    state_dicts keyed by network name (G_A, G_B, D_A, D_B).

    ValueError naming both keys where two networks disagree; the full shapes are checked on loading.
    """
    found: dict[str, tuple[int, str]] = {}
    for name, state_dict in state_dicts.items():
        for field, (value, where) in _dimensions(name, strip_data_parallel_prefix(state_dict)).items():
            if field in found and found[field][0] != value:
                raise ValueError(f"inconsistent {field}: {where} gives {value}, "
                                 f"{found[field][1]} gives {found[field][0]}")
            found.setdefault(field, (value, where))
    return dataclasses.replace(base, **{field: value for field, (value, _) in found.items()})


# --- reference checkpoint files ----------------------------------------------------------------------

_EPOCH_FILE = re.compile(r"^(?P<epoch>.+)_net_(?P<net>G_A|G_B|D_A|D_B)\.pth$")
_NET_FILE = re.compile(r"(?:^|_)(?P<net>G_A|G_B|D_A|D_B)\.pth$")


def _default_epoch(folder: Path, epochs: Sequence[str]) -> str:
    """`latest` if the folder has it, else the largest numbered epoch."""
    if "latest" in epochs:
        return "latest"
    numbered = [e for e in epochs if e.isdigit()]
    if not numbered:
        raise FileNotFoundError(f"{folder} has no latest_net_*.pth nor numbered epochs (epochs: {sorted(epochs)}): "
                                "choose one with --epoch")
    return max(numbered, key=int)


def _files_of_epoch(folder: Path, epoch: str | None) -> dict[str, Path]:
    """{network: path} of one epoch in a folder; FileNotFoundError naming a missing generator file."""
    by_epoch: dict[str, dict[str, Path]] = {}
    for path in folder.iterdir():
        if match := _EPOCH_FILE.match(path.name):
            by_epoch.setdefault(match["epoch"], {})[match["net"]] = path
    if not by_epoch:
        raise FileNotFoundError(f"no reference checkpoints (<epoch>_net_G_A.pth, ...) in {folder}")
    chosen = _default_epoch(folder, list(by_epoch)) if epoch in (None, "latest") else epoch
    if chosen not in by_epoch:
        raise FileNotFoundError(f"no epoch {chosen!r} in {folder}: it has epochs {sorted(by_epoch)}")
    missing = [str(folder / f"{chosen}_net_{name}.pth") for name in training.GENERATORS if name not in by_epoch[chosen]]
    if missing:
        raise FileNotFoundError(f"missing {' and '.join(missing)} (both generators are needed)")
    return by_epoch[chosen]


def _named_files(paths: Sequence[Path]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file or folder")
        match = _NET_FILE.search(path.name)
        if match is None:
            raise ValueError(f"{path}: cannot tell which network it holds: expected a name ending in "
                             "G_A.pth, G_B.pth, D_A.pth or D_B.pth (as <epoch>_net_G_A.pth)")
        if match["net"] in files:
            raise ValueError(f"two files for {match['net']}: {files[match['net']]} and {path}")
        files[match["net"]] = path
    missing = [name for name in training.GENERATORS if name not in files]
    if missing:
        raise FileNotFoundError(f"no file for {' and '.join(missing)} among {[str(p) for p in paths]} "
                                "(both generators are needed, named ..._net_G_A.pth and ..._net_G_B.pth)")
    return files


def reference_files(sources: Sequence[str | Path], epoch: str | None = None) -> dict[str, Path]:
    """The `.pth` file of each network, {name: path}: from one folder of the reference's checkpoints
    (`<epoch>_net_<NET>.pth`; epoch None or 'latest': `latest` if there, else the largest number), or from
    listed files named `..._<NET>.pth`. G_A and G_B are required, D_A and D_B optional."""
    paths = [Path(s) for s in sources]
    if len(paths) == 1 and paths[0].is_dir():
        files = _files_of_epoch(paths[0], epoch)
    elif epoch is not None:
        raise ValueError(f"--epoch {epoch} chooses among the files of one folder; these are files: "
                         f"{[str(p) for p in paths]}")
    else:
        files = _named_files(paths)
    return {name: files[name] for name in NETWORKS if name in files}


# --- whole runs: reference files <-> our checkpoints ------------------------------------------------


@dataclasses.dataclass
class Imported:
    """What `from_torch` did."""

    files: dict[str, Path]  # network -> .pth file read
    config: Config  # the run's config (model section inferred from the weights)
    fresh: list[str]  # networks without a file, freshly initialised
    checkpoint: Path  # the checkpoint folder written


def reference_networks(state_dicts: Mapping[str, Mapping[str, np.ndarray]], config: Config) -> dict[str, nnx.Module]:
    """The four networks: those with a state_dict loaded from it, the others freshly initialised.

    KeyError or ValueError naming the network and the key of a state_dict that does not fit.
    """
    modules = {}
    with x64_scope(config.model.dtype):
        for name in NETWORKS:
            if name in state_dicts:
                modules[name] = abstract(SetGenerator if name in training.GENERATORS else SetDiscriminator,
                                         config.model)
                try:
                    load_reference(modules[name], state_dicts[name])
                except (KeyError, ValueError) as err:
                    raise type(err)(f"{name}: {err.args[0]}") from err
            else:
                modules[name] = training.fresh_network(name, config.model, config.train.seed)
    return modules


def from_torch(sources: Sequence[str | Path], workdir: str | Path, config: Config,
               epoch: str | None = None) -> Imported:
    """Write the reference's `.pth` networks (see `reference_files`) as checkpoint 0 of a new run.

    The model section of `config` takes the architecture read off the weights (its dtype is kept);
    Adam states are fresh and the image pools empty. Refuses a workdir that has checkpoints.
    """
    require_torch()
    if config.method != "instagan":
        raise ValueError(f"--from-torch reads the reference's InstaGAN networks (ResnetSetGenerator, "
                         f"NLayerSetDiscriminator); the config's method is {config.method}")
    workdir = Path(workdir)
    check_workdir(workdir)
    if steps := saved_steps(workdir):
        raise ValueError(f"{workdir / 'checkpoints'} already has checkpoints {steps}: choose a new --out")
    files = reference_files(sources, epoch)
    state_dicts = {name: strip_data_parallel_prefix(read_torch_state_dict(path)) for name, path in files.items()}
    config = dataclasses.replace(config, model=infer_model_config(state_dicts, config.model))
    validate(config)
    spec = step_spec(config, 1.0)
    params, spectral = training.split_networks(reference_networks(state_dicts, config))
    checkpoints = Checkpoints(workdir, keep=config.log.keep_checkpoints)
    try:
        with x64_scope(config.model.dtype):
            state = training.state_from_params(spec, params, spectral, config.train.seed)
            folder = checkpoints.save(0, state, {}, config.to_dict())  # {}: no data position yet
    finally:
        checkpoints.close()
    return Imported(files, config, [name for name in NETWORKS if name not in files], folder)


REFERENCE_METHODS = ("instagan", "cyclegan", "pix2pix")  # the methods of the PyTorch reference fork


def to_torch(out: str | Path, workdir: str | Path | None = None,
             checkpoint: str | Path | None = None) -> list[Path]:
    """Write a checkpoint's four networks as the reference's `<step>_net_<NET>.pth` files into `out`
    (in the run's dtype); FileExistsError naming a file that is already there."""
    require_torch()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    if (method := saved_config(workdir, checkpoint).method) not in REFERENCE_METHODS:
        raise ValueError(f"--to-torch writes the PyTorch reference's checkpoints, and a {method} run has no reference "
                         f"here (it works for {', '.join(REFERENCE_METHODS)} runs)")
    config, step, state, _ = restore_state(workdir, checkpoint)
    state_dicts = reference_state_dicts(config, state)
    paths = {name: out / f"{step}_net_{name}.pth" for name in state_dicts}
    if existing := [str(p) for p in paths.values() if p.exists()]:
        raise FileExistsError(f"not overwriting {existing}: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return [write_torch_state_dict(path, state_dicts[name]) for name, path in paths.items()]


def reference_state_dicts(config: Config, state) -> dict[str, dict[str, np.ndarray]]:
    """A train state's networks as the reference's state_dicts, by network name, for any method."""
    if config.method == "pix2pix":
        from instagan_jax.methods import pix2pix

        with x64_scope(config.model.dtype):
            return pix2pix.reference_state(pix2pix.Spec.from_config(config), state)
    networks = networks_from_state(config, state)
    if config.method == "cyclegan":
        from instagan_jax.methods import cyclegan_convert

        return {name: cyclegan_convert.to_reference(module) for name, module in networks.items()}
    return {name: to_reference(networks[name]) for name in NETWORKS}
