"""Pure array functions for the network layers, equal to their PyTorch counterparts.

Layout: activations NHWC, conv kernels HWIO. The PyTorch reference is NCHW / OIHW; conversion
happens only in `instagan_jax.convert`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_DIMENSIONS = ("NHWC", "HWIO", "NHWC")

INSTANCE_NORM_EPS = 1e-5
SPECTRAL_NORM_EPS = 1e-12


def conv2d(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None, *,
           stride: int = 1, padding: int = 0, pad_mode: str = "zeros") -> jax.Array:
    """2-D cross-correlation like `torch.nn.Conv2d` (after `ReflectionPad2d` when pad_mode='reflect').

    Every conv is a `_canonical_conv`; a reflect-padded one runs its forward as a zero-padded conv of
    the reflect-padded input with the border cropped (PERF_NOTES.md).
    """
    if pad_mode == "reflect" and padding:
        if stride != 1:
            raise ValueError("reflection padding is only used with stride 1")
        p = padding
        y = _canonical_conv(jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect"), kernel, 1, 0)
    elif pad_mode in ("zeros", "reflect"):
        y = _canonical_conv(x, kernel, stride, padding)
    else:
        raise ValueError(f"pad_mode must be 'zeros' or 'reflect', got {pad_mode!r}")
    return y if bias is None else y + bias


def _conv(x: jax.Array, kernel: jax.Array, stride: int = 1, padding=((0, 0), (0, 0)), *,
          lhs_dilation: int = 1, rhs_dilation: int = 1) -> jax.Array:
    """`lax.conv_general_dilated` in the one layout XLA CPU runs fast: NHWC input, HWIO kernel, NHWC out."""
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding, (lhs_dilation,) * 2,
                                    (rhs_dilation,) * 2, dimension_numbers=_DIMENSIONS)


def _output_size(size: int, k: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - k) // stride + 1


def _is_small_map(x_shape, kernel_shape, stride: int, padding: int) -> bool:
    """Under 256 output positions (batch x H x W) and 64+ output channels: a conv XLA CPU runs at
    20-40 GFLOP/s (the discriminators' 512 -> 1024 classifier on 7x7 maps), a matmul at 80-140."""
    out_h = _output_size(x_shape[1], kernel_shape[0], stride, padding)
    out_w = _output_size(x_shape[2], kernel_shape[1], stride, padding)
    return x_shape[0] * out_h * out_w < 256 and kernel_shape[3] >= 64


def _patches(x: jax.Array, kh: int, kw: int, stride: int, padding: int) -> jax.Array:
    """(B, Ho, Wo, kh*kw*C): the zero-padded input window of each output position, taps major."""
    batch, height, width, channels = x.shape
    out_h, out_w = _output_size(height, kh, stride, padding), _output_size(width, kw, stride, padding)
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    return jnp.concatenate([
        lax.slice(padded, (0, ky, kx, 0), (batch, ky + stride * (out_h - 1) + 1, kx + stride * (out_w - 1) + 1,
                                           channels), (1, stride, stride, 1))
        for ky in range(kh) for kx in range(kw)], axis=-1)


def _patches_transpose(d_patches: jax.Array, x_shape, kh: int, kw: int, stride: int, padding: int) -> jax.Array:
    """The adjoint of `_patches`: each tap's cotangent added back where its window came from."""
    batch, height, width, channels = x_shape
    _, out_h, out_w, _ = d_patches.shape
    padded_h, padded_w = height + 2 * padding, width + 2 * padding
    total = jnp.zeros((batch, padded_h, padded_w, channels), d_patches.dtype)
    for tap in range(kh * kw):
        ky, kx = divmod(tap, kw)
        part = d_patches[..., tap * channels:(tap + 1) * channels]
        high_h = padded_h - ky - stride * (out_h - 1) - 1
        high_w = padded_w - kx - stride * (out_w - 1) - 1
        total = total + lax.pad(part, jnp.zeros((), part.dtype),
                                ((0, 0, 0), (ky, high_h, stride - 1), (kx, high_w, stride - 1), (0, 0, 0)))
    return total[:, padding:padding + height, padding:padding + width]


def _conv_as_matmul(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    patches = _patches(x, kernel.shape[0], kernel.shape[1], stride, padding)
    return lax.dot_general(patches, kernel.reshape(-1, kernel.shape[3]), (((3,), (0,)), ((), ())))


def _conv_as_matmul_grads(x: jax.Array, kernel: jax.Array, stride: int, padding: int, dy: jax.Array):
    """(input, kernel) cotangents of `_conv_as_matmul`: two matmuls and the patches' adjoint."""
    kh, kw, _, out_ch = kernel.shape
    d_patches = lax.dot_general(dy, kernel.reshape(-1, out_ch), (((3,), (1,)), ((), ())))
    patches = _patches(x, kh, kw, stride, padding)
    d_kernel = lax.dot_general(patches, dy, (((0, 1, 2), (0, 1, 2)), ((), ())))
    return (_patches_transpose(d_patches, x.shape, kh, kw, stride, padding),
            d_kernel.reshape(kernel.shape))


def _forward_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """The conv itself: on small maps as one matmul of the input's patches; without padding and with
    stride 1, as a zero-padded ('SAME') conv, cropped.

    The cropped form keeps the 7x7 heads with 1 or 3 output channels on the fast path (a VALID conv
    of them is ~20x slower on XLA CPU, PERF_NOTES.md); both give the same values.
    """
    if _is_small_map(x.shape, kernel.shape, stride, padding):
        return _conv_as_matmul(x, kernel, stride, padding)
    if stride == 1 and padding == 0:
        kh, kw = kernel.shape[:2]
        top, left = (kh - 1) // 2, (kw - 1) // 2  # the low side of lax's SAME padding
        y = lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=_DIMENSIONS)
        return y[:, top:top + x.shape[1] - kh + 1, left:left + x.shape[2] - kw + 1]
    return _conv(x, kernel, stride, ((padding, padding), (padding, padding)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _canonical_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """A conv whose backward pass is written as canonical NHWC x HWIO convs too.

    Autodiff's input- and weight-gradient convs have other dimension layouts; XLA CPU rewrites them
    into the canonical one outside loops but not inside a `lax.scan` body, where they run 5-45x slower
    (PERF_NOTES.md). Reverse mode only (a custom VJP has no forward-mode rule).
    """
    return _forward_conv(x, kernel, stride, padding)


def _canonical_conv_fwd(x, kernel, stride, padding):
    return _forward_conv(x, kernel, stride, padding), (x, kernel)


def _conv_input_grad(dy: jax.Array, kernel: jax.Array, stride: int, padding: int, x_shape) -> jax.Array:
    """The cotangent of a conv's input: `dy` (input-dilated by the stride) conv the flipped kernel."""
    kh, kw = kernel.shape[:2]
    # Input rows (and columns) past the last window that the strided conv reaches get no gradient.
    rest_h = (x_shape[1] + 2 * padding - kh) % stride
    rest_w = (x_shape[2] + 2 * padding - kw) % stride
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)  # (kh, kw, O, I)
    return _conv(dy, flipped, 1, ((kh - 1 - padding, kh - 1 - padding + rest_h),
                                  (kw - 1 - padding, kw - 1 - padding + rest_w)), lhs_dilation=stride)


def _conv_kernel_grad(x: jax.Array, dy: jax.Array, stride: int, padding: int, kernel_shape) -> jax.Array:
    """The cotangent of a conv's kernel: by taps for kernels up to 4x4 on maps of 1024+ output
    positions or with one output channel (the discriminators' last conv: 25 -> 0.7 ms at 128x128),
    else as one conv (where XLA CPU measured each form faster, docs/BENCHMARKS.md)."""
    kh, kw = kernel_shape[:2]
    if kh * kw <= 16 and (dy.shape[0] * dy.shape[1] * dy.shape[2] >= 1024 or kernel_shape[3] == 1):
        return _kernel_grad_by_taps(x, dy, stride, padding, kernel_shape)
    return _kernel_grad_as_conv(x, dy, stride, padding, kernel_shape)


def _kernel_grad_by_taps(x: jax.Array, dy: jax.Array, stride: int, padding: int, kernel_shape) -> jax.Array:
    """One matmul per tap: the padded input against `dy` shifted to that tap's place (stride 1), or the
    input window that tap sees against `dy` (stride > 1); all batch positions as the contracted rows.

    At stride 1 the shifted copies are of `dy`: windows of `x` would be cut (and kept) in the forward pass.
    """
    kh, kw = kernel_shape[:2]
    batch, out_h, out_w, out_ch = dy.shape
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    in_ch = x.shape[3]
    taps = []
    for ky in range(kh):
        for kx in range(kw):
            if stride == 1:
                lhs = padded
                rhs = jnp.pad(dy, ((0, 0), (ky, kh - 1 - ky), (kx, kw - 1 - kx), (0, 0)))
            else:
                lhs = lax.slice(padded, (0, ky, kx, 0),
                                (batch, ky + stride * (out_h - 1) + 1, kx + stride * (out_w - 1) + 1, in_ch),
                                (1, stride, stride, 1))
                rhs = dy
            taps.append(lax.dot_general(lhs.reshape(-1, in_ch), rhs.reshape(-1, out_ch), (((0,), (0,)), ((), ()))))
    return jnp.stack(taps).reshape(kh, kw, in_ch, out_ch)


def _kernel_grad_as_conv(x: jax.Array, dy: jax.Array, stride: int, padding: int, kernel_shape) -> jax.Array:
    """Input channels as the batch, the batch as features, `dy` as a kernel dilated by the stride."""
    kh, kw = kernel_shape[:2]
    rest_h = (x.shape[1] + 2 * padding - kh) % stride
    rest_w = (x.shape[2] + 2 * padding - kw) % stride
    dw = _conv(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), 1,
               ((padding, padding - rest_h), (padding, padding - rest_w)), rhs_dilation=stride)
    return dw.transpose(1, 2, 0, 3)


def _canonical_conv_bwd(stride, padding, residuals, dy):
    x, kernel = residuals
    if _is_small_map(x.shape, kernel.shape, stride, padding):
        return _conv_as_matmul_grads(x, kernel, stride, padding, dy)
    return (_conv_input_grad(dy, kernel, stride, padding, x.shape),
            _conv_kernel_grad(x, dy, stride, padding, kernel.shape))


_canonical_conv.defvjp(_canonical_conv_fwd, _canonical_conv_bwd)


def _shift_up(x: jax.Array, axis: int) -> jax.Array:
    """x[m + 1] along `axis`, zero past the end."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, 1)
    return lax.slice_in_dim(jnp.pad(x, pad), 1, x.shape[axis] + 1, axis=axis)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _transposed_conv(x: jax.Array, kernel: jax.Array, col2im) -> jax.Array:
    """A stride-2, padding-1 transposed conv computed by `col2im(x, kernel)` (one matmul and shifted adds).

    Its VJP is written through the conv it transposes (stride 2, padding 1, kernel with in/out swapped):
    the input's cotangent is that conv of `dy`, the kernel's its kernel gradient, both canonical convs.
    Autodiff of the col2im would pad each tap's cotangent to the size of all taps (9-16 buffers of
    9-16x the input) and run its convs in slow layouts inside a `lax.scan` (PERF_NOTES.md).
    """
    return col2im(x, kernel)


def _transposed_conv_fwd(x, kernel, col2im):
    return col2im(x, kernel), (x, kernel)


def _transposed_conv_bwd(col2im, residuals, dy):
    x, kernel = residuals
    adjoint = kernel.transpose(0, 1, 3, 2)  # the kernel of the stride-2 conv this op transposes
    dx = _forward_conv(dy, adjoint, 2, 1)
    return dx, _conv_kernel_grad(dy, x, 2, 1, adjoint.shape).transpose(0, 1, 3, 2)


_transposed_conv.defvjp(_transposed_conv_fwd, _transposed_conv_bwd)


def conv_transpose2d_s2(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """`torch.nn.ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)`: (B,H,W,I) -> (B,2H,2W,O).

    `kernel` is (3, 3, I, O) with PyTorch's tap order (kernel[ky, kx, i, o] == torch_w[i, o, ky, kx]).
    Computed as one matmul and a col2im of strided adds: output row 2m takes tap 1 of input row m,
    row 2m+1 takes tap 2 of row m plus tap 0 of row m+1 (same along columns); its VJP is that of
    `_transposed_conv`. The input-dilated conv
    form is numerically the same but its weight gradient is ~40x slower on XLA CPU (PERF_NOTES.md).
    """
    y = _transposed_conv(x, kernel, _col2im_k3)
    return y if bias is None else y + bias


def _col2im_k3(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`conv_transpose2d_s2` without bias, by its taps."""
    b, h, w, _ = x.shape
    taps = jnp.einsum("bhwi,yxio->bhwyxo", x, kernel)  # (B,H,W,3,3,O)

    def tap(ky, kx):
        return taps[:, :, :, ky, kx, :]

    # Spatial axes of a tap are 1 (rows) and 2 (columns).
    even_even = tap(1, 1)
    even_odd = tap(1, 2) + _shift_up(tap(1, 0), 2)
    odd_even = tap(2, 1) + _shift_up(tap(0, 1), 1)
    odd_odd = (tap(2, 2) + _shift_up(tap(2, 0), 2) + _shift_up(tap(0, 2), 1)
               + _shift_up(_shift_up(tap(0, 0), 1), 2))
    rows_even = jnp.stack([even_even, even_odd], axis=3)  # (B,H,W,2,O): column phase
    rows_odd = jnp.stack([odd_even, odd_odd], axis=3)
    y = jnp.stack([rows_even, rows_odd], axis=2)  # (B,H,2,W,2,O): row phase, column phase
    return y.reshape(b, 2 * h, 2 * w, kernel.shape[-1])


def _shift_down(x: jax.Array, axis: int) -> jax.Array:
    """x[m - 1] along `axis`, zero before the start."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 0)
    return lax.slice_in_dim(jnp.pad(x, pad), 0, x.shape[axis], axis=axis)


def _k4_phases(taps: jax.Array, tap_axis: int, axis: int) -> jax.Array:
    """Even and odd outputs along `axis` of a k4 s2 p1 transposed conv, stacked after `axis`.

    Output 2m takes tap 1 of input m and tap 3 of input m-1; output 2m+1 takes tap 2 of input m and
    tap 0 of input m+1. `tap_axis` (removed) indexes the taps along this spatial axis.
    """
    def tap(k):  # a static slice: its transpose is a pad (jnp.take's would be a scatter XLA constant-folds slowly)
        return lax.index_in_dim(taps, k, axis=tap_axis, keepdims=False)

    even = tap(1) + _shift_down(tap(3), axis)
    odd = tap(2) + _shift_up(tap(0), axis)
    return jnp.stack([even, odd], axis=axis + 1)


def conv_transpose2d_k4s2(x: jax.Array, kernel: jax.Array, bias: jax.Array | None = None) -> jax.Array:
    """`torch.nn.ConvTranspose2d(k=4, stride=2, padding=1)`: (B,H,W,I) -> (B,2H,2W,O).

    `kernel` is (4, 4, I, O) with PyTorch's tap order (kernel[ky, kx, i, o] == torch_w[i, o, ky, kx]).
    One matmul and a col2im of shifted adds with `_transposed_conv`'s VJP, like `conv_transpose2d_s2`
    (the input-dilated conv form's weight gradient is far slower on XLA CPU, PERF_NOTES.md).
    """
    y = _transposed_conv(x, kernel, _col2im_k4)
    return y if bias is None else y + bias


def _col2im_k4(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`conv_transpose2d_k4s2` without bias, by its taps."""
    b, h, w, _ = x.shape
    taps = jnp.einsum("bhwi,yxio->bhwyxo", x, kernel)  # (B,H,W,4,4,O)
    rows = _k4_phases(taps, tap_axis=3, axis=1)  # (B,H,2,W,4,O): row phase
    y = _k4_phases(rows, tap_axis=4, axis=3)  # (B,H,2,W,2,O): column phase
    return y.reshape(b, 2 * h, 2 * w, kernel.shape[-1])


def instance_norm(x: jax.Array, eps: float = INSTANCE_NORM_EPS) -> jax.Array:
    """`InstanceNorm2d(affine=False)`: per sample and channel over H, W, biased variance."""
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    centered = x - mean
    var = jnp.mean(jnp.square(centered), axis=(1, 2), keepdims=True)
    return centered * lax.rsqrt(var + eps)


def leaky_relu(x: jax.Array, slope: float = 0.2) -> jax.Array:
    """LeakyReLU, by default with the reference's slope 0.2."""
    return jnp.where(x >= 0, x, slope * x)


def l2_normalize(x: jax.Array, eps: float = SPECTRAL_NORM_EPS) -> jax.Array:
    """The reference's `x / (||x|| + eps)` (eps added to the norm, not clamped)."""
    return x / (jnp.linalg.norm(x) + eps)


def kernel_matrix(kernel: jax.Array) -> jax.Array:
    """HWIO kernel as PyTorch's `weight.view(out, -1)`: rows = output channels, columns (in, kh, kw)."""
    return jnp.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[-1], -1)


def power_iteration(kernel: jax.Array, u: jax.Array, v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One power-iteration step on the (constant) weight: v = l2n(W^T u), u = l2n(W v)."""
    w = lax.stop_gradient(kernel_matrix(kernel))
    v = l2_normalize(w.T @ u)
    u = l2_normalize(w @ v)
    return u, v


def spectral_sigma(kernel: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    """sigma = u . (W v): differentiable in the kernel, u and v held constant."""
    u, v = lax.stop_gradient(u), lax.stop_gradient(v)
    return u @ (kernel_matrix(kernel) @ v)
