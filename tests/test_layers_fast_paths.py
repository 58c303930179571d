"""The reflect-padded conv's custom VJP against the plain form it replaces.

`layers.conv2d(..., pad_mode='reflect')` computes its forward as a SAME conv plus a crop and its
backward as the VJP of a VALID conv (PERF_NOTES.md); values and all gradients must be those of the
straightforward VALID conv on the reflect-padded input, differentiated by JAX.
"""

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
