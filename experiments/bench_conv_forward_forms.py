"""Four ways to run a 3x3 stride-1 conv's forward on a reflect-padded input, on XLA CPU.

    python experiments/bench_conv_forward_forms.py [--repeats 15]

`layers._forward_conv` runs it as a zero-padded ('SAME') conv of the padded input with the border
cropped. The alternatives: the VALID conv itself, one matmul of the input's patches
(`layers._conv_as_matmul`), and one matmul per tap summed. Shapes are the residual blocks' at the
reference's sizes (256 channels; 16x16 maps at 64x64 images, 32x32 at 128x128, 2 = two masks).
Prints milliseconds (median) per form and the best form's GFLOP/s, and torch's conv of the same
input (NCHW, as the reference runs it) where torch is installed.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from jax import lax

from instagan_jax.nn import layers

SHAPES = [(1, 16, 256), (4, 16, 256), (1, 32, 256), (2, 32, 256), (1, 64, 256)]  # batch, output size, channels


def same_then_crop(x, kernel):
    return layers._forward_conv(x, kernel, 1, 0)


def valid_conv(x, kernel):
    return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=layers._DIMENSIONS)


def patches_matmul(x, kernel):
    return layers._conv_as_matmul(x, kernel, 1, 0)


def matmul_per_tap(x, kernel):
    kh, kw = kernel.shape[:2]
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    taps = [lax.dot_general(x[:, ky:ky + out_h, kx:kx + out_w], kernel[ky, kx], (((3,), (0,)), ((), ())))
            for ky in range(kh) for kx in range(kw)]
    return sum(taps[1:], taps[0])


FORMS = {"SAME + crop (ours)": same_then_crop, "VALID": valid_conv, "patches matmul": patches_matmul,
         "matmul per tap": matmul_per_tap}


def median_ms(fn, args, repeats: int) -> float:
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - start)
    return sorted(times)[repeats // 2] * 1e3


def torch_median_ms(x, kernel, repeats: int) -> float | None:
    """torch.nn.functional.conv2d of the same (already padded) input, NCHW; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    x_nchw = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    weight = torch.from_numpy(np.asarray(kernel).transpose(3, 2, 0, 1).copy())
    with torch.no_grad():
        torch.nn.functional.conv2d(x_nchw, weight)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.nn.functional.conv2d(x_nchw, weight)
            times.append(time.perf_counter() - start)
    return sorted(times)[repeats // 2] * 1e3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    print("| input (B, H, W, C) | " + " | ".join(f"{name} ms" for name in FORMS) + " | best GFLOP/s | torch ms |")
    print("|---" * (len(FORMS) + 3) + "|")
    for batch, size, channels in SHAPES:
        x = jax.random.normal(jax.random.key(0), (batch, size + 2, size + 2, channels))
        kernel = 0.02 * jax.random.normal(jax.random.key(1), (3, 3, channels, channels))
        times = [median_ms(fn, (x, kernel), args.repeats) for fn in FORMS.values()]
        gflop = 2 * batch * size * size * 9 * channels * channels / 1e9
        torch_ms = torch_median_ms(x, kernel, args.repeats)
        print(f"| {x.shape} | " + " | ".join(f"{t:.2f}" for t in times) + f" | {gflop / min(times) * 1e3:.0f} | "
              + ("n/a (no torch)" if torch_ms is None else f"{torch_ms:.2f}") + " |")


if __name__ == "__main__":
    main()
