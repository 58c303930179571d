"""Map PyTorch reference state_dicts (`{key: array}`, NCHW/OIHW layout) to our modules and back.

Generator keys look like `encoder_img.10.conv_block.1.weight`, discriminator keys like
`feature_seg.0.module.weight_bar` (REFERENCE.md §1-2). Conv weights are OIHW in PyTorch and HWIO
here; ConvTranspose2d weights are (in, out, kh, kw) in PyTorch and (kh, kw, in, out) here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from instagan_jax.models import SetDiscriminator, SetGenerator

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


def read_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read a reference `.pth` file into numpy arrays (needs the optional `torch` extra)."""
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"reading {path} needs PyTorch: pip install -e '.[torch]'") from err
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, Mapping):
        raise ValueError(f"{path}: expected a state_dict (a mapping of tensors), got {type(state).__name__}")
    return {k: v.detach().cpu().numpy() for k, v in state.items()}
