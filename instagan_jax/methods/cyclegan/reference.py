"""CycleGAN networks <-> the reference's state_dicts (`{key: array}`, OIHW layout).

Generator keys index the reference's `ResnetGenerator.model` sequence (`model.1.weight`,
`model.10.conv_block.1.weight`, ...), discriminator keys its `NLayerDiscriminator.model`
(`model.0.module.weight_bar`, `weight_u`, `weight_v`, `bias`). Files and layouts: `instagan_jax.torch_io`.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from instagan_jax.methods.base import Reference
from instagan_jax.methods.cyclegan import step as training
from instagan_jax.methods.cyclegan.step import (
    N_LAYERS_D,
    Discriminator,
    ResnetGenerator,
)
from instagan_jax.nn.build import ModelConfig, abstract
from instagan_jax.torch_io import (
    LEAF_ORDER,
    SN_LEAVES,
    leaf_from_torch,
    leaf_to_torch,
    strip_data_parallel_prefix,
)

# positions in the reference's generator sequence (blocks start at 10; the decoder follows them)
_ENCODER_LAYERS = {"stem": 1, "down1": 4, "down2": 7}
_DECODER_OFFSETS = {"up1": 0, "up2": 3, "head": 7}
_FIRST_BLOCK = 10
_BLOCK_CONVS = {"conv1": 1, "conv2": 5}
_BLOCK_KEY = re.compile(r"model\.(\d+)\.conv_block\.")


def _generator_key(path: tuple, n_blocks: int) -> str:
    """Our generator state path -> reference key."""
    half, *rest, leaf = path
    suffix = "weight" if leaf == "kernel" else "bias"
    if half == "decoder":
        return f"model.{_FIRST_BLOCK + n_blocks + _DECODER_OFFSETS[rest[0]]}.{suffix}"
    if rest[0] == "blocks":
        return f"model.{_FIRST_BLOCK + rest[1]}.conv_block.{_BLOCK_CONVS[rest[2]]}.{suffix}"
    return f"model.{_ENCODER_LAYERS[rest[0]]}.{suffix}"


def _discriminator_key(path: tuple) -> str:
    """Our discriminator state path -> reference key (`first`, `convs[i]`, `last` are SN convs 0, 2+3i, 2+3n)."""
    if path[0] == "first":
        index = 0
    elif path[0] == "convs":
        index = 2 + 3 * path[1]
    else:
        index = 2 + 3 * N_LAYERS_D
    return f"model.{index}.module.{SN_LEAVES[path[-1]]}"


def _keyed_variables(module: nnx.Module) -> dict[str, tuple[tuple, nnx.Variable]]:
    """{reference key: (our path, variable)} of a CycleGAN generator or discriminator."""
    if isinstance(module, ResnetGenerator):
        key_of = functools.partial(_generator_key, n_blocks=len(module.encoder.blocks))
    elif isinstance(module, Discriminator):
        key_of = _discriminator_key
    else:
        raise TypeError(f"expected a cyclegan ResnetGenerator or Discriminator, got {type(module).__name__}")
    return {key_of(tuple(path)): (tuple(path), var) for path, var in nnx.to_flat_state(nnx.state(module))}


def _reference_order(key: str) -> tuple:
    """The reference's state_dict order: sequence position, then the leaf (convert's order)."""
    parts = key.split(".")
    return [int(p) for p in parts if p.isdigit()], LEAF_ORDER.index(parts[-1])


def to_reference(module: nnx.Module) -> dict[str, np.ndarray]:
    """A reference state_dict (numpy, the module's dtype, the reference's key order)."""
    flat = {key: leaf_to_torch(path, np.asarray(var[...]))
            for key, (path, var) in _keyed_variables(module).items()}
    return {key: flat[key] for key in sorted(flat, key=_reference_order)}


def load_reference(module: nnx.Module, state_dict: Mapping[str, np.ndarray]) -> None:
    """Overwrite a module's state (SN u, v included) from a reference state_dict, cast to its dtype.

    KeyError naming missing or unexpected keys; ValueError naming a key whose shape does not fit.
    """
    state_dict = strip_data_parallel_prefix(state_dict)
    keyed = _keyed_variables(module)
    missing, unexpected = sorted(keyed.keys() - state_dict.keys()), sorted(state_dict.keys() - keyed.keys())
    if missing or unexpected:
        raise KeyError(f"{type(module).__name__} state_dict mismatch: missing {missing[:8]}, "
                       f"unexpected {unexpected[:8]}")
    for key, (path, var) in keyed.items():
        ours = var.get_value()
        value = leaf_from_torch(path, np.asarray(state_dict[key], dtype=ours.dtype))
        if value.shape != ours.shape:
            raise ValueError(f"{key}: reference shape {np.shape(state_dict[key])} does not fit this model "
                             f"(expects {leaf_to_torch(path, np.zeros(ours.shape)).shape}); "
                             "check ngf/ndf/n_blocks/image_channels")
        var.set_value(jnp.asarray(value))


def infer_model_config(state_dicts: Mapping[str, Mapping[str, np.ndarray]],
                       base: ModelConfig) -> ModelConfig:
    """`base` with ngf, n_blocks, image_channels (from G_A or G_B) and ndf (from D_A or D_B) read off
    reference state_dicts keyed by network name; ValueError where two networks disagree."""
    found: dict[str, int] = {}

    def record(field: str, value: int, name: str) -> None:
        if found.setdefault(field, value) != value:
            raise ValueError(f"inconsistent {field}: {name} gives {value}, another network {found[field]}")

    for name, state_dict in state_dicts.items():
        state_dict = strip_data_parallel_prefix(state_dict)
        if name.startswith("G"):
            out_ch, in_ch = np.shape(state_dict["model.1.weight"])[:2]
            record("ngf", int(out_ch), name)
            record("n_blocks", len({m.group(1) for k in state_dict if (m := _BLOCK_KEY.match(k))}), name)
        else:
            out_ch, in_ch = np.shape(state_dict["model.0.module.weight_bar"])[:2]
            record("ndf", int(out_ch), name)
        record("image_channels", int(in_ch), name)
    return dataclasses.replace(base, **found)


def state_from_torch(spec: training.Spec, state_dicts: Mapping[str, Mapping[str, np.ndarray]],
                     seed: int = 0) -> training.TrainState:
    """A step-0 train state holding the reference's networks (those without a state_dict fresh)."""
    networks = {}
    for name in training.NETWORKS:
        if name not in state_dicts:
            networks[name] = training.fresh_network(name, spec.model, seed)
            continue
        networks[name] = abstract(training.network_class(name), spec.model)
        try:
            load_reference(networks[name], state_dicts[name])
        except (KeyError, ValueError) as err:
            raise type(err)(f"{name}: {err.args[0]}") from err
    return training.state_from_networks(spec, networks, seed)


def to_torch(spec: training.Spec, state: training.TrainState) -> dict[str, dict[str, np.ndarray]]:
    """The four networks of a train state as the reference's state_dicts."""
    return {name: to_reference(module) for name, module in training.modules(spec, state).items()}


REFERENCE = Reference(networks=training.NETWORKS, required=training.GENERATORS, infer_model=infer_model_config,
                      state_from_torch=state_from_torch, to_torch=to_torch,
                      describes="ResnetGenerator, NLayerDiscriminator", model="cycle_gan",
                      parity="instagan_jax.methods.cyclegan.parity")
