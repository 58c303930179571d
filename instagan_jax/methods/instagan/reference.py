"""InstaGAN's networks <-> the PyTorch reference's state_dicts (`{key: array}`, NCHW/OIHW layout).

Generator keys look like `encoder_img.10.conv_block.1.weight`, discriminator keys like
`feature_seg.0.module.weight_bar` (REFERENCE.md §1-2). Files and layouts: `instagan_jax.torch_io`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from instagan_jax.methods.base import Reference
from instagan_jax.methods.instagan import step as training
from instagan_jax.methods.instagan.config import InstaganModel
from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
from instagan_jax.nn.build import ResnetModel, abstract
from instagan_jax.torch_io import (
    LEAF_ORDER,
    SN_LEAVES,
    leaf_from_torch,
    leaf_to_torch,
    strip_data_parallel_prefix,
)

GENERATORS, NETWORKS = training.GENERATORS, training.GENERATORS + training.DISCRIMINATORS

_ENCODER_LAYERS = {"stem": 1, "down1": 4, "down2": 7}
_DECODER_LAYERS = {"up1": 0, "up2": 3, "head": 7}
_BLOCK_CONVS = {"conv1": 1, "conv2": 5}
_FEATURE_LAYERS = {"conv1": 0, "conv2": 2, "conv3": 5}
_CLASSIFIER_LAYERS = {"classifier1": "classifier.0", "classifier2": "classifier.3"}


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
    return f"{prefix}.module.{SN_LEAVES[path[-1]]}"


def _key_fn(model: nnx.Module):
    if isinstance(model, SetGenerator):
        return _generator_key
    if isinstance(model, SetDiscriminator):
        return _discriminator_key
    raise TypeError(f"expected a SetGenerator or SetDiscriminator, got {type(model).__name__}")


_NET_ORDER = ("encoder_img", "encoder_seg", "decoder_img", "decoder_seg",
              "feature_img", "feature_seg", "classifier")


def _reference_sort_key(key: str) -> tuple:
    """The reference's state_dict order: module order, then weight/bias (SN: bias, u, v, weight_bar)."""
    parts = key.split(".")
    return (_NET_ORDER.index(parts[0]), [int(p) for p in parts[1:-1] if p.isdigit()],
            LEAF_ORDER.index(parts[-1]))


def to_reference(model: nnx.Module) -> dict[str, np.ndarray]:
    """A reference-layout state_dict (numpy, the model's dtype, reference key order) of a G or D."""
    key_fn = _key_fn(model)
    flat = {key_fn(tuple(path)): leaf_to_torch(tuple(path), np.asarray(var[...]))
            for path, var in nnx.to_flat_state(nnx.state(model))}
    return {key: flat[key] for key in sorted(flat, key=_reference_sort_key)}


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
        value = leaf_from_torch(path, np.asarray(state_dict[key], dtype=expected.dtype))
        expected_shape = expected.shape
        if value.shape != expected_shape:
            torch_shape = np.asarray(state_dict[key]).shape
            raise ValueError(f"{key}: reference shape {torch_shape} does not fit this model "
                             f"(expects {leaf_to_torch(path, np.zeros(expected_shape)).shape}); "
                             "check ngf/ndf/n_blocks/image_channels")
        var.set_value(jnp.asarray(value))


_BLOCK_KEY = re.compile(r"encoder_img\.(\d+)\.conv_block\.")


def _shape_of(name: str, state_dict: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise KeyError(f"{name}: no {key!r} in the state_dict: not a reference "
                       f"{'ResnetSetGenerator' if name in GENERATORS else 'NLayerSetDiscriminator'}")
    return tuple(np.shape(state_dict[key]))


def _dimensions(name: str, state_dict: Mapping[str, np.ndarray]) -> dict[str, tuple[int, str]]:
    """{model field: (value, where it was read)} of one network's state_dict."""
    if name in GENERATORS:
        key = "encoder_img.1.weight"  # (ngf, image channels, 7, 7)
        shape = _shape_of(name, state_dict, key)
        blocks = {int(m.group(1)) for k in state_dict if (m := _BLOCK_KEY.match(k))}
        return {"ngf": (shape[0], f"{name} {key} {shape}"), "image_channels": (shape[1], f"{name} {key} {shape}"),
                "n_blocks": (len(blocks), f"{name} encoder_img.<10+i>.conv_block keys")}
    key = "feature_img.0.module.weight_bar"  # (ndf, image channels, 4, 4)
    shape = _shape_of(name, state_dict, key)
    return {"ndf": (shape[0], f"{name} {key} {shape}"), "image_channels": (shape[1], f"{name} {key} {shape}")}


def infer_model_config(state_dicts: Mapping[str, Mapping[str, np.ndarray]],
                       base: ResnetModel | None = None) -> ResnetModel:
    """`base` with ngf, n_blocks, image_channels and (given a discriminator) ndf read off reference
    state_dicts keyed by network name (G_A, G_B, D_A, D_B).

    ValueError naming both keys where two networks disagree; the full shapes are checked on loading.
    """
    base = InstaganModel() if base is None else base
    found: dict[str, tuple[int, str]] = {}
    for name, state_dict in state_dicts.items():
        for field, (value, where) in _dimensions(name, strip_data_parallel_prefix(state_dict)).items():
            if field in found and found[field][0] != value:
                raise ValueError(f"inconsistent {field}: {where} gives {value}, "
                                 f"{found[field][1]} gives {found[field][0]}")
            found.setdefault(field, (value, where))
    return dataclasses.replace(base, **{field: value for field, (value, _) in found.items()})


def reference_networks(state_dicts: Mapping[str, Mapping[str, np.ndarray]], model: ResnetModel,
                       seed: int = 0) -> dict[str, nnx.Module]:
    """The four networks: those with a state_dict loaded from it, the others freshly initialised.

    KeyError or ValueError naming the network and the key of a state_dict that does not fit.
    """
    modules = {}
    for name in NETWORKS:
        if name not in state_dicts:
            modules[name] = training.fresh_network(name, model, seed)
            continue
        modules[name] = abstract(SetGenerator if name in GENERATORS else SetDiscriminator, model)
        try:
            load_reference(modules[name], state_dicts[name])
        except (KeyError, ValueError) as err:
            raise type(err)(f"{name}: {err.args[0]}") from err
    return modules


def state_from_torch(spec: training.StepSpec, state_dicts: Mapping[str, Mapping[str, np.ndarray]],
                     seed: int = 0) -> training.TrainState:
    """A step-0 train state holding the reference's networks (fresh Adam, empty pools)."""
    params, spectral = training.split_networks(reference_networks(state_dicts, spec.model, seed))
    return training.state_from_params(spec, params, spectral, seed)


def to_torch(spec: training.StepSpec, state: training.TrainState) -> dict[str, dict[str, np.ndarray]]:
    """The four networks of a train state as the reference's state_dicts."""
    networks = training.modules(spec, state)
    return {name: to_reference(networks[name]) for name in NETWORKS}


REFERENCE = Reference(networks=NETWORKS, required=GENERATORS, infer_model=infer_model_config,
                      state_from_torch=state_from_torch, to_torch=to_torch,
                      describes="ResnetSetGenerator, NLayerSetDiscriminator", model="insta_gan",
                      parity="instagan_jax.methods.instagan.parity")
