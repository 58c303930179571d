"""PyTorch `.pth` files and layouts, for every method's reference mapping (`methods/<name>/reference.py`).

    state_dict = read_torch_state_dict("latest_net_G_A.pth")        # {key: numpy array}, torch layout
    files = reference_files(["checkpoints/run"], None, ("G_A", "G_B", "D_A", "D_B"), required=("G_A", "G_B"))
    kernel = from_torch_layout(state_dict["model.1.weight"])          # OIHW -> HWIO

Conv weights are OIHW in PyTorch and HWIO here; ConvTranspose2d weights are (in, out, kh, kw) in
PyTorch and (kh, kw, in, out) here. Spectral-norm convs keep `weight_bar`, `weight_u`, `weight_v` and
the bias. Nothing here knows a method: the network names come from the caller.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

TORCH_EXTRA = ("pip install 'instagan-jax[torch]' (in a checkout: pip install -e '.[torch]'; on a CPU-only "
               "machine first: pip install torch --index-url https://download.pytorch.org/whl/cpu)")
LEAF_ORDER = ("weight", "bias", "weight_u", "weight_v", "weight_bar")  # the reference's order within a layer
SN_LEAVES = {"bias": "bias", "u": "weight_u", "v": "weight_v", "kernel": "weight_bar"}  # ours -> the reference's
_CONV_TO_TORCH, _CONV_FROM_TORCH = (3, 2, 0, 1), (2, 3, 1, 0)
_TRANSPOSED = (2, 3, 0, 1)  # its own inverse
TRANSPOSED_LAYERS = ("up1", "up2")  # the transposed convs of `nn.modules.Decoder`


def to_torch_layout(kernel: np.ndarray, transposed: bool = False) -> np.ndarray:
    """Our HWIO conv kernel (or (kh, kw, in, out) transposed-conv kernel) in PyTorch's layout."""
    return kernel.transpose(_TRANSPOSED if transposed else _CONV_TO_TORCH)


def from_torch_layout(weight: np.ndarray, transposed: bool = False) -> np.ndarray:
    """A PyTorch conv weight (OIHW, or (in, out, kh, kw) transposed) in our layout."""
    return weight.transpose(_TRANSPOSED if transposed else _CONV_FROM_TORCH)


def _is_transposed(path: tuple) -> bool:
    return path[-2] in TRANSPOSED_LAYERS


def leaf_to_torch(path: tuple, value: np.ndarray) -> np.ndarray:
    """A variable at an NNX state path (…, layer, leaf) in PyTorch's layout: kernels transposed,
    as transposed-conv kernels under the layers in TRANSPOSED_LAYERS; other leaves as they are."""
    return to_torch_layout(value, _is_transposed(path)) if path[-1] == "kernel" else value


def leaf_from_torch(path: tuple, value: np.ndarray) -> np.ndarray:
    """The inverse of `leaf_to_torch`."""
    return from_torch_layout(value, _is_transposed(path)) if path[-1] == "kernel" else value


def strip_data_parallel_prefix(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drop a leading `module.` that `nn.DataParallel` adds to every key, if all keys have it."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


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
    """Read a `.pth` state_dict into numpy arrays (needs the optional `torch` extra); ValueError naming
    the file when it is not a readable state_dict (truncated, another kind of pickle)."""
    torch = require_torch()
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path}: not a PyTorch state_dict file ({str(err).splitlines()[0]})") from err
    except RuntimeError as err:  # a truncated or damaged zip archive
        raise ValueError(f"{path}: damaged PyTorch file ({str(err).splitlines()[0]})") from err
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


# --- the reference's checkpoint files: <epoch>_net_<NET>.pth ----------------------------------------


def _patterns(networks: Sequence[str]) -> tuple[re.Pattern, re.Pattern]:
    names = "|".join(re.escape(n) for n in sorted(networks, key=len, reverse=True))
    return (re.compile(rf"^(?P<epoch>.+)_net_(?P<net>{names})\.pth$"),
            re.compile(rf"(?:^|_)(?P<net>{names})\.pth$"))


def _default_epoch(folder: Path, epochs: Sequence[str]) -> str:
    """`latest` if the folder has it, else the largest numbered epoch."""
    if "latest" in epochs:
        return "latest"
    numbered = [e for e in epochs if e.isdigit()]
    if not numbered:
        raise FileNotFoundError(f"{folder} has no latest_net_*.pth nor numbered epochs (epochs: {sorted(epochs)}): "
                                "choose one with --epoch")
    return max(numbered, key=int)


def _files_of_epoch(folder: Path, epoch: str | None, networks: Sequence[str],
                    required: Sequence[str]) -> dict[str, Path]:
    """{network: path} of one epoch in a folder; FileNotFoundError naming a missing required file."""
    epoch_file, _ = _patterns(networks)
    by_epoch: dict[str, dict[str, Path]] = {}
    for path in folder.iterdir():
        if match := epoch_file.match(path.name):
            by_epoch.setdefault(match["epoch"], {})[match["net"]] = path
    if not by_epoch:
        raise FileNotFoundError(f"no reference checkpoints (<epoch>_net_{networks[0]}.pth, ...) in {folder}")
    chosen = _default_epoch(folder, list(by_epoch)) if epoch in (None, "latest") else epoch
    if chosen not in by_epoch:
        raise FileNotFoundError(f"no epoch {chosen!r} in {folder}: it has epochs {sorted(by_epoch)}")
    missing = [str(folder / f"{chosen}_net_{name}.pth") for name in required if name not in by_epoch[chosen]]
    if missing:
        raise FileNotFoundError(f"missing {' and '.join(missing)} (needed: {', '.join(required)})")
    return by_epoch[chosen]


def _named_files(paths: Sequence[Path], networks: Sequence[str], required: Sequence[str]) -> dict[str, Path]:
    _, net_file = _patterns(networks)
    files: dict[str, Path] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file or folder")
        match = net_file.search(path.name)
        if match is None:
            raise ValueError(f"{path}: cannot tell which network it holds: expected a name ending in "
                             f"{', '.join(f'{n}.pth' for n in networks)} (as <epoch>_net_{networks[0]}.pth)")
        if match["net"] in files:
            raise ValueError(f"two files for {match['net']}: {files[match['net']]} and {path}")
        files[match["net"]] = path
    missing = [name for name in required if name not in files]
    if missing:
        raise FileNotFoundError(f"no file for {' and '.join(missing)} among {[str(p) for p in paths]} "
                                f"(needed: {', '.join(f'..._net_{n}.pth' for n in required)})")
    return files


def reference_files(sources: Sequence[str | Path], epoch: str | None, networks: Sequence[str],
                    required: Sequence[str]) -> dict[str, Path]:
    """The `.pth` file of each network, {name: path} in `networks` order: from one folder of reference
    checkpoints (`<epoch>_net_<NET>.pth`; epoch None or 'latest': `latest` if there, else the largest
    number), or from listed files named `..._<NET>.pth`. The `required` networks must have a file."""
    paths = [Path(s) for s in sources]
    if len(paths) == 1 and paths[0].is_dir():
        files = _files_of_epoch(paths[0], epoch, networks, required)
    elif epoch is not None:
        raise ValueError(f"--epoch {epoch} chooses among the files of one folder; these are files: "
                         f"{[str(p) for p in paths]}")
    else:
        files = _named_files(paths, networks, required)
    return {name: files[name] for name in networks if name in files}
