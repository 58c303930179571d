"""The convs' custom VJPs against the plain forms they replace, and the layouts XLA compiles.

Every conv and transposed conv has a VJP written as canonical NHWC x HWIO convs (PERF_NOTES.md: other
layouts run 5-45x slower inside a `lax.scan` on XLA CPU); the reflect-padded conv also computes its
forward as a SAME conv plus a crop. Values and all gradients must be those of the straightforward
forms differentiated by JAX, and a compiled training iteration must hold canonical convs only.
"""

import collections
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from instagan_jax.nn import layers

ATOL = 1e-4  # on arrays scaled to a largest magnitude of 1


def _rand(seed, shape, scale=1.0):
    return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _assert_close(ours, plain, name=""):
    """Equal to ATOL after scaling both by the largest magnitude of `plain`."""
    ours, plain = np.asarray(ours), np.asarray(plain)
    assert ours.shape == plain.shape, name
    scale = np.max(np.abs(plain))
    assert scale > 0, name
    np.testing.assert_allclose(ours / scale, plain / scale, atol=ATOL, rtol=0, err_msg=name)


def _plain(x, kernel, bias, p):
    padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    y = lax.conv_general_dilated(padded, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


def _ours(x, kernel, bias, p):
    return layers.conv2d(x, kernel, bias, padding=p, pad_mode="reflect")


def _forward_and_grads(f, x, kernel, bias, cotangent, p):
    """f's output and its gradients wrt input, kernel and bias for `cotangent`."""
    out, vjp = jax.vjp(lambda x, kernel, bias: f(x, kernel, bias, p), x, kernel, bias)
    return (out, *vjp(cotangent))


def _case(batch, size, k, cin, cout, seed=0):
    x = _rand(seed, (batch, size, size, cin))
    kernel = _rand(seed + 1, (k, k, cin, cout), 1.0 / np.sqrt(k * k * cin))
    bias = _rand(seed + 2, (cout,))
    cotangent = _rand(seed + 3, (batch, size, size, cout))
    return x, kernel, bias, cotangent


SHAPES = [  # batch, size, kernel, in, out: the image head, the mask head, a residual block conv
    (1, 12, 7, 8, 3),
    (2, 10, 7, 6, 1),
    (2, 8, 3, 5, 4),
]


@pytest.mark.parametrize("batch,size,k,cin,cout", SHAPES)
def test_forward_and_gradients_equal_valid_conv_on_reflect_padded_input(batch, size, k, cin, cout):
    args = _case(batch, size, k, cin, cout)
    run = jax.jit(_forward_and_grads, static_argnums=(0, 5))
    ours, plain = run(_ours, *args, k // 2), run(_plain, *args, k // 2)
    assert ours[0].shape == (batch, size, size, cout)
    for name, a, b in zip(("output", "input grad", "kernel grad", "bias grad"), ours, plain):
        _assert_close(a, b, name)


def test_second_order_reverse_mode_matches():
    """The custom backward is itself differentiable: grad of a function of the input gradient."""
    x, kernel, bias, cotangent = _case(1, 6, 3, 2, 3, seed=20)

    def input_grad_norm(f):
        def inner(kernel):
            dx = jax.grad(lambda x: jnp.sum(f(x, kernel, bias, 1) * cotangent))(x)
            return jnp.sum(jnp.square(dx))
        return jax.jit(jax.grad(inner))(kernel)

    _assert_close(input_grad_norm(_ours), input_grad_norm(_plain))


def _plain_conv(x, kernel, stride, padding):
    return lax.conv_general_dilated(x, kernel, (stride, stride), [(padding, padding)] * 2,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("size,k,stride,padding,cout", [
    (9, 3, 2, 1, 5), (8, 3, 2, 1, 5), (8, 4, 2, 1, 5), (7, 4, 2, 1, 5), (6, 4, 1, 1, 5), (5, 3, 1, 0, 5),
    # 1024+ output positions: kernel gradient by taps
    (32, 3, 1, 1, 5), (26, 4, 1, 0, 5), (64, 3, 2, 1, 5), (65, 4, 2, 1, 5),
    # one output channel: kernel gradient by taps
    (8, 4, 1, 1, 1),
    # under 256 output positions, 64+ output channels: the conv as a matmul of patches
    (8, 4, 1, 1, 64), (9, 4, 2, 1, 64), (10, 3, 2, 0, 70)])
def test_zero_padded_conv_gradients_equal_autodiff(size, k, stride, padding, cout):
    """Strided and stride-1 convs (the encoders' downsampling, the discriminators' 4x4 convs)."""
    x, kernel, _, _ = _case(2, size, k, 3, cout, seed=30)
    out = _plain_conv(x, kernel, stride, padding)
    cotangent = _rand(34, out.shape)
    ours = jax.vjp(lambda x, w: layers.conv2d(x, w, stride=stride, padding=padding), x, kernel)
    plain = jax.vjp(lambda x, w: _plain_conv(x, w, stride, padding), x, kernel)
    _assert_close(ours[0], plain[0], "output")
    for name, a, b in zip(("input grad", "kernel grad"), ours[1](cotangent), plain[1](cotangent)):
        _assert_close(a, b, name)


@pytest.mark.parametrize("op,k", [(layers.conv_transpose2d_s2, 3), (layers.conv_transpose2d_k4s2, 4)])
def test_transposed_conv_values_and_gradients_equal_autodiff_of_its_definition(op, k):
    """A stride-2 transposed conv is the VJP of the stride-2 conv it transposes (kernel in/out swapped)."""
    x, kernel, _, _ = _case(2, 5, k, 3, 4, seed=40)  # kernel (k, k, in=3, out=4) in PyTorch's tap order

    def plain(x, kernel):
        adjoint = kernel.transpose(0, 1, 3, 2)
        return jax.vjp(lambda y: _plain_conv(y, adjoint, 2, 1), jnp.zeros((2, 10, 10, 4)))[1](x)[0]

    cotangent = _rand(44, (2, 10, 10, 4))
    ours, plain = jax.vjp(op, x, kernel), jax.vjp(plain, x, kernel)
    _assert_close(ours[0], plain[0], "output")
    for name, a, b in zip(("input grad", "kernel grad"), ours[1](cotangent), plain[1](cotangent)):
        _assert_close(a, b, name)


def test_scan_over_mask_groups_compiles_to_canonical_convs_only():
    """The design's form (a `lax.scan` over groups): no conv left in a slow layout (PERF_NOTES.md)."""
    from conftest import TINY_RUN

    from instagan_jax import loop, methods
    from instagan_jax.methods import config_from_dict
    from instagan_jax.methods.instagan import step as training
    # 64x64: at smaller sizes XLA rewrites the discriminator's last convs (a 4x4 kernel on 2x2-4x4 maps)
    # into other layouts itself, whatever the VJP says
    data = {**TINY_RUN["data"], "options": {**TINY_RUN["data"]["options"], "height": 72, "width": 72},
            "crop_size": [64, 64]}
    config = config_from_dict({**TINY_RUN, "data": data})
    loader = loop.make_loader(config)
    batch = next(loader)
    loader.close()
    spec = loop.step_spec(config, loader.batches_per_epoch)
    assert not spec.unroll_groups and spec.n_groups == 2
    placement = loop.make_placement()
    state = training.init_state(spec)
    text = loop.compiled_step(methods.get("instagan"), spec, placement).lower(
        state, loop.to_global(batch, loop.BATCH_KEYS["sets"], placement.sharded)).compile().as_text()
    layouts = collections.Counter(re.findall(r"dim_labels=([0-9a-z_]+->[0-9a-z]+)", text))
    assert layouts["b01f_01io->b01f"] > 0
    assert set(layouts) == {"b01f_01io->b01f"}, layouts
