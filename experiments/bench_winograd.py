"""Winograd F(2x2, 3x3) against XLA CPU's conv, for the residual blocks' 3x3 256 -> 256 convs.

    python experiments/bench_winograd.py [--repeats 15] [--float64-check]

A 3x3 stride-1 VALID conv by Winograd's minimal filtering (Lavin and Gray, "Fast Algorithms for
Convolutional Neural Networks", CVPR 2016: each 2x2 output tile from a 4x4 input tile with 16
multiplications per channel pair instead of 36, 2.25x fewer multiply-adds; the transforms are strided
slices and adds, the products 16 batched matmuls) against the package's conv (`layers._forward_conv`).
`install` routes the package's convs to it where this table showed it faster (TILES), for the whole
iteration's measurement in experiments/bench_iteration_variants.py; it is not the package's default
(docs/BENCHMARKS.md section 9). Shapes as
bench_conv_forward_forms.py (the residual blocks' at the reference's sizes, reflect padding applied
before), and the input gradient's conv (the flipped kernel on `dy` padded by 2), which the backward
pass runs on each block too. Prints milliseconds (median, same process, alternating per repeat) and
the largest difference from XLA's conv relative to the output's largest value.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from instagan_jax.nn import layers

SHAPES = [(1, 16, 256), (2, 16, 256), (4, 16, 256), (8, 16, 256), (1, 32, 256), (2, 32, 256), (4, 32, 256), (1, 50, 256),
          (1, 64, 256)]  # batch, output size, channels: the residual maps at 64x64, 128x128 and 200x200 images, 4 = masks


# output tiles (batch x H/2 x W/2) and channels where the table showed Winograd faster, for `install`
TILES, MIN_CHANNELS = (128, 768), 64


def uses_winograd(x_shape, kernel_shape, dtype) -> bool:
    """A VALID stride-1 conv that `install` runs by Winograd: 3x3 kernel, even output sides, TILES output
    tiles, MIN_CHANNELS+ channels in and out, float32 or float64."""
    kh, kw, in_ch, out_ch = kernel_shape
    out_h, out_w = x_shape[1] - kh + 1, x_shape[2] - kw + 1
    tiles = x_shape[0] * (out_h // 2) * (out_w // 2)
    return ((kh, kw) == (3, 3) and out_h % 2 == 0 and out_w % 2 == 0 and min(in_ch, out_ch) >= MIN_CHANNELS
            and TILES[0] <= tiles <= TILES[1] and jnp.dtype(dtype) in (jnp.float32, jnp.float64))


def _input_rows(x: jax.Array, axis: int) -> list[jax.Array]:
    """B^T along `axis` over 4-wide windows at stride 2: the four transformed rows of every tile."""
    tiles = (x.shape[axis] - 2) // 2
    d0, d1, d2, d3 = (jax.lax.slice_in_dim(x, i, i + 2 * tiles - 1, 2, axis) for i in range(4))
    return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def _kernel_rows(kernel: jax.Array, axis: int) -> jax.Array:
    """G along `axis` (3 taps -> 4), written as adds (an einsum with G took 4.4 ms, longer than the conv)."""
    g0, g1, g2 = (jnp.take(kernel, i, axis=axis) for i in range(3))
    return jnp.stack([g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2], axis=axis)


def winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The VALID 3x3 stride-1 conv of NHWC `x` (even output sides) with HWIO `kernel`, by Winograd."""
    batch, height, width, in_ch = x.shape
    out_ch = kernel.shape[3]
    th, tw = (height - 2) // 2, (width - 2) // 2
    v = jnp.stack([col for row in _input_rows(x, 1) for col in _input_rows(row, 2)])  # (16, N, th, tw, I)
    u = _kernel_rows(_kernel_rows(kernel, 0), 1).reshape(16, in_ch, out_ch)
    m = jax.lax.dot_general(v.reshape(16, -1, in_ch), u, (((2,), (1,)), ((0,), (0,))))
    m = m.reshape(4, 4, batch, th, tw, out_ch)
    rows = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])  # A^T along the tile's rows, then its columns
    tiles = [jnp.stack([r[0] + r[1] + r[2], r[1] - r[2] - r[3]], axis=3) for r in rows]
    return jnp.stack(tiles, axis=2).reshape(batch, 2 * th, 2 * tw, out_ch)


def xla_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The package's form of these convs: `layers._forward_conv` (a SAME conv, cropped)."""
    return layers._forward_conv(x, kernel, 1, 0)


def install() -> None:
    """Route the package's 3x3 stride-1 convs where `uses_winograd` (forward, and the input gradient's
    conv) to `winograd`, in this process (experiments/bench_iteration_variants.py's `winograd`)."""
    forward, input_grad = layers._forward_conv, layers._conv_input_grad

    def forward_conv(x, kernel, stride, padding):
        if stride == 1 and padding == 0 and uses_winograd(x.shape, kernel.shape, x.dtype):
            return winograd(x, kernel)
        return forward(x, kernel, stride, padding)

    def conv_input_grad(dy, kernel, stride, padding, x_shape):
        if stride == 1 and kernel.shape[:2] == (3, 3) and padding <= 2:
            padded, flipped = input_grad_operands(dy, kernel, 2 - padding)
            if uses_winograd(padded.shape, flipped.shape, dy.dtype):
                return winograd(padded, flipped)
        return input_grad(dy, kernel, stride, padding, x_shape)

    layers._forward_conv, layers._conv_input_grad = forward_conv, conv_input_grad


def input_grad_operands(dy: jax.Array, kernel: jax.Array, edge: int = 2) -> tuple[jax.Array, jax.Array]:
    """The input gradient of a 3x3 stride-1 conv (zero padding 2 - edge) as a VALID conv: `dy` padded by
    `edge`, the flipped kernel with in and out swapped."""
    padded = jnp.pad(dy, ((0, 0), (edge, edge), (edge, edge), (0, 0)))
    return padded, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)


def timings(forms: dict, args: tuple, repeats: int) -> dict[str, float]:
    """Median ms of each form, alternating the forms within each repeat."""
    compiled = {name: jax.jit(fn).lower(*args).compile() for name, fn in forms.items()}
    for fn in compiled.values():
        jax.block_until_ready(fn(*args))
    times: dict[str, list[float]] = {name: [] for name in forms}
    for _ in range(repeats):
        for name, fn in compiled.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def relative_error(a: jax.Array, b: jax.Array) -> float:
    return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


def installed_error() -> float:
    """The largest relative error of `layers.conv2d`'s output, input and kernel gradients with `install`
    (at a shape it routes to Winograd), against JAX's autodiff of the plain conv; float64 enabled."""
    x = jax.random.normal(jax.random.key(2), (2, 16, 16, 64), jnp.float64)
    kernel = jax.random.normal(jax.random.key(3), (3, 3, 64, 64), jnp.float64) / 24
    cotangent = jax.random.normal(jax.random.key(4), (2, 16, 16, 64), jnp.float64)
    assert uses_winograd((2, 18, 18, 64), kernel.shape, jnp.float64)

    def plain(x, kernel):
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        return jax.lax.conv_general_dilated(padded, kernel, (1, 1), "VALID", dimension_numbers=layers._DIMENSIONS)

    install()
    y, vjp = jax.vjp(lambda x, k: layers.conv2d(x, k, padding=1, pad_mode="reflect"), x, kernel)
    y_plain, vjp_plain = jax.vjp(plain, x, kernel)
    pairs = [(y, y_plain), *zip(vjp(cotangent), vjp_plain(cotangent))]
    return max(relative_error(a, b) for a, b in pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--float64-check", action="store_true", help="also the relative error in float64")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    forms = {"XLA conv": xla_conv, "Winograd": winograd}
    print("| pass | input (B, H, W, C) | XLA conv ms | Winograd ms | speed | rel. error f32 |")
    print("|---|---|---|---|---|---|")
    for batch, size, ch in SHAPES:
        keys = jax.random.split(jax.random.key(size * 10 + batch), 2)
        x = jax.random.normal(keys[0], (batch, size + 2, size + 2, ch), jnp.float32)
        kernel = 0.02 * jax.random.normal(keys[1], (3, 3, ch, ch), jnp.float32)
        for name, operands in (("forward", (x, kernel)),
                               ("input grad", input_grad_operands(x[:, 1:-1, 1:-1], kernel))):
            ms = timings(forms, operands, args.repeats)
            error = relative_error(winograd(*operands), xla_conv(*operands))
            shape = tuple(operands[0].shape)
            print(f"| {name} | {shape} | {ms['XLA conv']:.2f} | {ms['Winograd']:.2f} "
                  f"| {ms['XLA conv'] / ms['Winograd']:.2f}x | {error:.1e} |", flush=True)
    if args.float64_check:
        jax.config.update("jax_enable_x64", True)
        x = jax.random.normal(jax.random.key(0), (2, 18, 18, 16), jnp.float64)
        kernel = jax.random.normal(jax.random.key(1), (3, 3, 16, 8), jnp.float64)
        print(f"float64 relative error: {relative_error(winograd(x, kernel), xla_conv(x, kernel)):.1e}")
        print("float64, `install`ed, a reflect-padded conv's value and gradients against JAX's autodiff of the "
              f"VALID conv: relative error {installed_error():.1e}")


if __name__ == "__main__":
    main()
