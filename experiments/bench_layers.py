"""Wall time of the layers with XLA CPU slow paths (PERF_NOTES.md), ours against the naive forms.

    python experiments/bench_layers.py [--size 64] [--repeats 5] [--full]

Without --full a smaller architecture (ngf 32, 3 blocks) keeps the run to a few minutes; --full is the
default architecture (ngf 64, 9 blocks). Times are medians after warm-up, under jax.jit, in ms;
fwd+bwd is value_and_grad of sum(out * cotangent). GFLOP/s counts nominal conv FLOPs (fwd+bwd = 3x fwd).

Forms: 'ours' is `instagan_jax.layers` as it stands; 'dilated' the transposed conv as an input-dilated
conv; 'VALID' a VALID conv on the reflect-padded input; 'SAME+crop (autodiff)' a zero-padded conv on
the reflect-padded input, border cropped, differentiated by JAX (ours uses this forward with a VJP
written as canonical NHWC x HWIO convs, `layers._canonical_conv`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
from instagan_jax.nn import layers
from instagan_jax.nn.build import ResnetModel, create

DIMENSIONS = ("NHWC", "HWIO", "NHWC")
WARMUP_CALLS = 2


def median_ms(fn, *args, repeats: int) -> float:
    """Median wall time of `fn(*args)` in ms after warm-up (compilation included in the warm-up)."""
    for _ in range(WARMUP_CALLS):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def rand(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> jax.Array:
    return scale * jax.random.normal(jax.random.key(seed), shape, jnp.float32)


# --- naive and alternative forms -------------------------------------------------------------

def conv_transpose_dilated(x, kernel, bias=None):
    """ConvTranspose2d(k3, s2, p1, op1) as an input-dilated conv with the flipped kernel."""
    y = lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), [(1, 2), (1, 2)], lhs_dilation=(2, 2),
                                 dimension_numbers=DIMENSIONS)
    return y if bias is None else y + bias


def reflect_pad(x, p):
    return jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")


def conv_valid(xp, kernel):
    return lax.conv_general_dilated(xp, kernel, (1, 1), "VALID", dimension_numbers=DIMENSIONS)


def conv_same_crop(xp, kernel):
    p = kernel.shape[0] // 2
    y = lax.conv_general_dilated(xp, kernel, (1, 1), [(p, p), (p, p)], dimension_numbers=DIMENSIONS)
    return y[:, p:-p, p:-p]


def with_reflect_form(form):
    """`layers.conv2d` with its reflect branch computed as `form(reflect-padded input, kernel)`."""
    original = layers.conv2d  # bound now: patching `layers.conv2d` later never recurses

    def conv2d(x, kernel, bias=None, *, stride=1, padding=0, pad_mode="zeros"):
        if pad_mode != "reflect" or not padding:
            return original(x, kernel, bias, stride=stride, padding=padding, pad_mode=pad_mode)
        y = form(reflect_pad(x, padding), kernel)
        return y if bias is None else y + bias

    return conv2d


REFLECT_FORMS = {
    "ours": layers.conv2d,
    "VALID": with_reflect_form(conv_valid),
    "SAME+crop (autodiff)": with_reflect_form(conv_same_crop),
}


@contextlib.contextmanager
def patched_layers(conv2d, conv_transpose2d_s2):
    """Swap the layer functions the models call (they look them up in `layers` at trace time)."""
    saved = layers.conv2d, layers.conv_transpose2d_s2
    layers.conv2d, layers.conv_transpose2d_s2 = conv2d, conv_transpose2d_s2
    try:
        yield
    finally:
        layers.conv2d, layers.conv_transpose2d_s2 = saved


# --- single layers ---------------------------------------------------------------------------

def fwd_and_fwd_bwd(f, args, out_shape, repeats):
    """(fwd ms, fwd+bwd ms) of f(*args), gradients wrt every argument."""
    cotangent = rand(99, out_shape)
    loss = lambda *a: jnp.sum(f(*a) * cotangent)  # noqa: E731
    grad = jax.jit(jax.value_and_grad(loss, argnums=tuple(range(len(args)))))
    return median_ms(jax.jit(f), *args, repeats=repeats), median_ms(grad, *args, repeats=repeats)


def table_header(title, columns):
    print(f"\n### {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def row(cells):
    print("| " + " | ".join(cells) + " |", flush=True)


def rate(flop, ms):
    return f"{flop / ms / 1e6:.0f}"


def bench_conv_transpose(ngf, size, repeats):
    table_header("ConvTranspose2d(k3, s2): ours (matmul + col2im) vs input-dilated conv",
                 ["layer", "batch", "in HxW", "form", "fwd ms", "fwd+bwd ms", "GFLOP/s fwd", "GFLOP/s fwd+bwd"])
    for name, batch, cin, cout, h in (("img up1", 1, 8 * ngf, 4 * ngf, size // 4),
                                      ("img up2", 1, 4 * ngf, 2 * ngf, size // 2),
                                      ("seg up1", 2, 12 * ngf, 6 * ngf, size // 4),
                                      ("seg up2", 2, 6 * ngf, 3 * ngf, size // 2)):
        args = (rand(0, (batch, h, h, cin)), rand(1, (3, 3, cin, cout), 0.05), rand(2, (cout,)))
        flop = 2 * batch * h * h * 9 * cin * cout
        for form, f in (("ours", layers.conv_transpose2d_s2), ("dilated", conv_transpose_dilated)):
            fwd, both = fwd_and_fwd_bwd(f, args, (batch, 2 * h, 2 * h, cout), repeats)
            row([f"{name} {cin}->{cout}", str(batch), f"{h}x{h}", form, f"{fwd:.2f}", f"{both:.2f}",
                 rate(flop, fwd), rate(3 * flop, both)])


def bench_reflect_conv(ngf, size, repeats):
    table_header("Reflect-padded stride-1 conv: ours vs the plain forms on the reflect-padded input",
                 ["layer", "batch", "HxW", "form", "fwd ms", "fwd+bwd ms", "GFLOP/s fwd", "GFLOP/s fwd+bwd"])
    for name, batch, k, cin, cout, h in (("img stem 7x7", 1, 7, 3, ngf, size),
                                         ("seg stem 7x7", 2, 7, 1, ngf, size),
                                         ("img head 7x7", 1, 7, 2 * ngf, 3, size),
                                         ("seg head 7x7", 2, 7, 3 * ngf, 1, size),
                                         ("res block 3x3", 1, 3, 4 * ngf, 4 * ngf, size // 4),
                                         ("res block 3x3", 2, 3, 4 * ngf, 4 * ngf, size // 4)):
        args = (rand(0, (batch, h, h, cin)), rand(1, (k, k, cin, cout), 0.05), rand(2, (cout,)))
        flop = 2 * batch * h * h * k * k * cin * cout
        for form, conv in REFLECT_FORMS.items():
            f = lambda x, w, b, conv=conv, p=k // 2: conv(x, w, b, padding=p, pad_mode="reflect")  # noqa: E731
            fwd, both = fwd_and_fwd_bwd(f, args, (batch, h, h, cout), repeats)
            row([f"{name} {cin}->{cout}", str(batch), f"{h}x{h}", form, f"{fwd:.2f}", f"{both:.2f}",
                 rate(flop, fwd), rate(3 * flop, both)])


# --- whole networks --------------------------------------------------------------------------

def conv_flop(x_shape, kernel_shape, stride, padding):
    """Nominal FLOPs of one conv (2 * output elements * taps * input channels)."""
    kh, kw, cin, cout = kernel_shape
    ho = (x_shape[1] + 2 * padding - kh) // stride + 1
    wo = (x_shape[2] + 2 * padding - kw) // stride + 1
    return 2 * x_shape[0] * ho * wo * kh * kw * cin * cout


def forward_flop(fn, *args) -> int:
    """Nominal conv FLOPs of one forward pass, counted while tracing through the layer functions."""
    total = 0
    conv2d, conv_transpose2d_s2 = layers.conv2d, layers.conv_transpose2d_s2

    def counting_conv2d(x, kernel, bias=None, *, stride=1, padding=0, pad_mode="zeros"):
        nonlocal total
        total += conv_flop(x.shape, kernel.shape, stride, padding)
        return conv2d(x, kernel, bias, stride=stride, padding=padding, pad_mode=pad_mode)

    def counting_conv_transpose(x, kernel, bias=None):
        nonlocal total
        total += 2 * x.shape[0] * x.shape[1] * x.shape[2] * 9 * kernel.shape[2] * kernel.shape[3]
        return conv_transpose2d_s2(x, kernel, bias)

    with patched_layers(counting_conv2d, counting_conv_transpose):
        jax.eval_shape(fn, *args)
    return total


def network_fns(cls, config, inputs, grad_inputs: bool):
    """Jitted pure fwd and fwd+bwd (value_and_grad wrt params, and inputs if asked) of a fresh module."""
    graphdef, params, rest = nnx.split(create(cls, config, 0), nnx.Param, ...)

    def forward(params, rest, *args):
        return nnx.merge(graphdef, params, rest)(*args)

    def loss(params, rest, *args):
        return sum(jnp.mean(jnp.square(o)) for o in jax.tree.leaves(forward(params, rest, *args)))

    # rest (spectral-norm u, v) is differentiated too, so that the module's state updates happen at the
    # same trace level as its parameters; its gradient is unused and compiled away.
    argnums = (0, 1, 2, 3) if grad_inputs else (0, 1)
    return jax.jit(forward), jax.jit(jax.value_and_grad(loss, argnums=argnums)), (params, rest, *inputs)


NETWORK_FORMS = {
    "ours": (layers.conv2d, layers.conv_transpose2d_s2),
    "reflect SAME+crop (autodiff)": (REFLECT_FORMS["SAME+crop (autodiff)"], layers.conv_transpose2d_s2),
    "naive: reflect VALID, dilated transpose": (REFLECT_FORMS["VALID"], conv_transpose_dilated),
}


def bench_networks(config, size, repeats):
    table_header("Whole networks (jit of split/merge; G: grads wrt params, D: wrt params, image, masks)",
                 ["network", "layer forms", "fwd ms", "fwd+bwd ms", "GFLOP fwd", "GFLOP/s fwd+bwd"])
    img = rand(0, (1, size, size, config.image_channels))
    for cls, k, grad_inputs in ((SetGenerator, 2, False), (SetDiscriminator, 4, True)):
        inputs = (img, jnp.tanh(rand(1, (1, k, size, size, 1))), jnp.ones((1, k), bool))
        for form, fns in NETWORK_FORMS.items():
            if cls is SetDiscriminator and form != "ours":
                continue  # the discriminator has no reflect or transposed convs
            forward, grad, args = network_fns(cls, config, inputs, grad_inputs)
            with patched_layers(*fns):
                flop = forward_flop(forward, *args)
                fwd = median_ms(forward, *args, repeats=repeats)
                both = median_ms(grad, *args, repeats=repeats)
            row([f"{cls.__name__} (K={k})", form, f"{fwd:.1f}", f"{both:.1f}", f"{flop / 1e9:.2f}",
                 rate(3 * flop, both)])


def header(config, size, repeats):
    device = jax.devices()[0]
    print(f"jax {jax.__version__}, device {device.platform} ({device.device_kind}), "
          f"{len(os.sched_getaffinity(0))} usable cores of {os.cpu_count()}; XLA CPU threads: one per usable core "
          f"unless XLA_FLAGS says otherwise (XLA_FLAGS={os.environ.get('XLA_FLAGS', '(unset)')!r})")
    print(f"size {size}x{size}, ngf {config.ngf}, ndf {config.ndf}, {config.n_blocks} blocks, "
          f"median of {repeats} after {WARMUP_CALLS} warm-up calls")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="image height and width")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per entry")
    parser.add_argument("--full", action="store_true", help="default architecture (ngf 64, 9 blocks)")
    parser.add_argument("--only", choices=("transpose", "reflect", "networks"), help="run one section")
    args = parser.parse_args()
    config = ResnetModel() if args.full else ResnetModel(ngf=32, ndf=32, n_blocks=3)
    header(config, args.size, args.repeats)
    if args.only in (None, "transpose"):
        bench_conv_transpose(config.ngf, args.size, args.repeats)
    if args.only in (None, "reflect"):
        bench_reflect_conv(config.ngf, args.size, args.repeats)
    if args.only in (None, "networks"):
        bench_networks(config, args.size, args.repeats)


if __name__ == "__main__":
    main()
