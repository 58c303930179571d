"""pix2pix's networks <-> the PyTorch reference's state_dicts: the U-Net's nested `model.model.` keys and
the BN PatchGAN's `model.<i>` keys, BatchNorm running statistics and `num_batches_tracked` included."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from instagan_jax.methods.base import Reference
from instagan_jax.methods.pix2pix.step import (
    NETWORKS,
    Spec,
    TrainState,
    UnetGenerator,
    create_network,
    modules,
    state_from_networks,
)
from instagan_jax.nn.build import ModelConfig, abstract
from instagan_jax.nn.modules import BatchNorm, SNConv
from instagan_jax.nn.patchgan import PatchDiscriminator


def _unet_layers(g: UnetGenerator) -> list[tuple[str, nnx.Module]]:
    """(reference key prefix, layer) of every U-Net layer with state, in the reference's order."""
    inner = g.num_downs - 1

    def level(depth: int, prefix: str) -> list[tuple[str, nnx.Module]]:
        if depth == 0:
            return [(prefix + "0", g.downs[0]), *level(1, prefix + "1.model."), (prefix + "3", g.ups[0])]
        if depth == inner:
            return [(prefix + "1", g.downs[depth]), (prefix + "3", g.ups[depth]), (prefix + "4", g.up_norms[depth - 1])]
        return [(prefix + "1", g.downs[depth]), (prefix + "2", g.down_norms[depth - 1]),
                *level(depth + 1, prefix + "3.model."),
                (prefix + "5", g.ups[depth]), (prefix + "6", g.up_norms[depth - 1])]

    return level(0, "model.model.")


def _patchgan_layers(d: PatchDiscriminator) -> list[tuple[str, nnx.Module]]:
    """(reference key prefix, layer) of the BN PatchGAN: Sequential indices conv 0, [conv, BN, lrelu]..., last."""
    found = [("model.0.module", d.first)]
    for n, conv in enumerate(d.convs):
        found += [(f"model.{2 + 3 * n}.module", conv), (f"model.{3 + 3 * n}", d.norms[n])]
    return found + [(f"model.{2 + 3 * len(d.convs)}.module", d.last)]


def _leaves(layer: nnx.Module) -> list[tuple[str, nnx.Variable | None, str]]:
    """(reference leaf name, variable, layout) of one layer, in the reference's order; None = counter."""
    if isinstance(layer, BatchNorm):
        return [("weight", layer.scale, "vector"), ("bias", layer.bias, "vector"), ("running_mean", layer.mean, "vector"),
                ("running_var", layer.var, "vector"), ("num_batches_tracked", None, "counter")]
    if isinstance(layer, SNConv):
        bias = [] if layer.bias is None else [("bias", layer.bias, "vector")]
        return bias + [("weight_u", layer.u, "vector"), ("weight_v", layer.v, "vector"),
                       ("weight_bar", layer.kernel, "conv")]
    bias = [] if layer.bias is None else [("bias", layer.bias, "vector")]
    return [("weight", layer.kernel, "transposed" if layer.transposed else "conv")] + bias


def _reference_layout(module: nnx.Module) -> list[tuple[str, nnx.Variable | None, str]]:
    layers_ = _unet_layers(module) if isinstance(module, UnetGenerator) else _patchgan_layers(module)
    return [(f"{prefix}.{leaf}", var, layout) for prefix, layer in layers_ for leaf, var, layout in _leaves(layer)]


_TO_TORCH = {"conv": (3, 2, 0, 1), "transposed": (2, 3, 0, 1)}
_FROM_TORCH = {"conv": (2, 3, 1, 0), "transposed": (2, 3, 0, 1)}


def to_reference(module: nnx.Module, batches_tracked: int = 0) -> dict[str, np.ndarray]:
    """A U-Net or BN PatchGAN as the reference's state_dict (numpy, the module's dtype, its key order);
    every BatchNorm's num_batches_tracked is `batches_tracked`."""
    out = {}
    for key, var, layout in _reference_layout(module):
        if var is None:
            out[key] = np.asarray(batches_tracked)
            continue
        value = np.asarray(var[...])
        out[key] = value.transpose(_TO_TORCH[layout]) if layout in _TO_TORCH else value
    return out


def load_reference(module: nnx.Module, state_dict: Mapping[str, np.ndarray]) -> int:
    """Overwrite a U-Net's or BN PatchGAN's state from a reference state_dict (cast to the module's
    dtype); returns its num_batches_tracked. KeyError naming missing or unexpected keys, ValueError
    on a shape that does not fit or BatchNorm layers with different counts."""
    layout = _reference_layout(module)
    expected = {key for key, _, _ in layout}
    missing, unexpected = sorted(expected - state_dict.keys()), sorted(state_dict.keys() - expected)
    if missing or unexpected:
        raise KeyError(f"{type(module).__name__} state_dict mismatch: missing {missing[:8]}, unexpected {unexpected[:8]}")
    counts = set()
    for key, var, kind in layout:
        if var is None:
            counts.add(int(np.asarray(state_dict[key])))
            continue
        current = var.get_value()
        value = np.asarray(state_dict[key], dtype=current.dtype)
        value = value.transpose(_FROM_TORCH[kind]) if kind in _FROM_TORCH else value
        if value.shape != current.shape:
            raise ValueError(f"{key}: reference shape {np.shape(state_dict[key])} does not fit this model "
                             f"(check ngf/ndf/image size)")
        var.set_value(jnp.asarray(value))
    if len(counts) > 1:
        raise ValueError(f"{type(module).__name__}: BatchNorm layers disagree on num_batches_tracked: {sorted(counts)}")
    return counts.pop() if counts else 0


def reference_state(spec: Spec, state: TrainState) -> dict[str, dict[str, np.ndarray]]:
    """Both networks of a train state as reference state_dicts."""
    nets = modules(spec, state)
    return {name: to_reference(nets[name], int(state.batches_tracked[name])) for name in NETWORKS}


def import_networks(spec: Spec, state_dicts: Mapping[str, Mapping[str, np.ndarray]],
                    seed: int = 0) -> TrainState:
    """A step-0 train state holding reference state_dicts of G and (if given) D; a network without
    one is freshly initialised. KeyError or ValueError naming the network and key that do not fit, or the
    U-Net depth when the weights' is not the one the image size gives."""
    if "G" in state_dicts and (levels := max(key.count("model.") for key in state_dicts["G"]) - 1) != spec.num_downs:
        raise ValueError(f"G: the weights' U-Net has {levels} levels, data.crop_size {spec.height}x{spec.width} "
                         f"makes {spec.num_downs} (log2 of the smaller side): set data.crop_size to the size the "
                         f"weights were trained at (e.g. [{2 ** levels},{2 ** levels}])")
    networks, tracked = {}, {}
    for name in NETWORKS:
        if name not in state_dicts:
            networks[name] = create_network(spec, name, seed)
            continue
        networks[name] = abstract(spec.builder(name), spec.model)
        try:
            tracked[name] = load_reference(networks[name], state_dicts[name])
        except (KeyError, ValueError) as err:
            raise type(err)(f"{name}: {err.args[0]}") from err
    return state_from_networks(spec, networks, tracked, seed)


def infer_model_config(state_dicts: Mapping[str, Mapping[str, np.ndarray]], base: ModelConfig) -> ModelConfig:
    """`base` with ngf (G's first conv), ndf (D's first conv) and image_channels read off the state_dicts;
    the U-Net's depth follows the image size (`data.crop_size`), which must match the weights."""
    found = {}
    for name, key, field in (("G", "model.model.0.weight", "ngf"), ("D", "model.0.module.weight_bar", "ndf")):
        if name in state_dicts:
            if key not in state_dicts[name]:
                raise KeyError(f"{name}: no {key!r} in the state_dict: not a reference "
                               f"{'UnetGenerator' if name == 'G' else 'NLayerDiscriminator'}")
            out_ch, in_ch = np.shape(state_dicts[name][key])[:2]
            found[field] = int(out_ch)
            channels = int(in_ch) if name == "G" else int(in_ch) // 2  # D sees (input, output) stacked
            if found.setdefault("image_channels", channels) != channels:
                raise ValueError(f"inconsistent image_channels: G gives {found['image_channels']}, D {channels}")
    return dataclasses.replace(base, **found)


REFERENCE = Reference(networks=NETWORKS, required=("G",), infer_model=infer_model_config,
                      state_from_torch=import_networks, to_torch=reference_state,
                      describes="UnetGenerator, NLayerDiscriminator (batch norm)", model="pix2pix",
                      parity="instagan_jax.methods.pix2pix.parity")
