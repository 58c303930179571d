"""Layer numerics against straightforward re-statements of the PyTorch definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from instagan_jax.nn import layers


def _rand(seed, shape):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


def _conv_transpose_by_scatter(x, w):
    """ConvTranspose2d(k3, s2, p1, op1) from its definition: out[2i-1+ky, 2j-1+kx] += x[i,j] w[ky,kx]."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    b, h, wd, _ = x.shape
    out = np.zeros((b, 2 * h + 2, 2 * wd + 2, w.shape[-1]))  # one extra row/col each side
    for ky in range(3):
        for kx in range(3):
            contrib = np.einsum("bhwi,io->bhwo", x, w[ky, kx])
            out[:, ky:ky + 2 * h:2, kx:kx + 2 * wd:2] += contrib
    return out[:, 1:2 * h + 1, 1:2 * wd + 1]


def test_conv_transpose_equals_its_definition():
    x, w, b = _rand(0, (2, 5, 3, 4)), _rand(1, (3, 3, 4, 6)), _rand(2, (6,))
    ours = layers.conv_transpose2d_s2(x, w, b)
    assert ours.shape == (2, 10, 6, 6)
    np.testing.assert_allclose(ours, _conv_transpose_by_scatter(x, w) + np.asarray(b), atol=1e-5)


def test_conv_transpose_equals_dilated_conv_form():
    """REFERENCE.md's verified port: input dilated by 2, padded (1, 2), kernel flipped."""
    x, w = _rand(3, (1, 6, 4, 3)), _rand(4, (3, 3, 3, 5))
    dilated = lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), [(1, 2), (1, 2)], lhs_dilation=(2, 2),
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(layers.conv_transpose2d_s2(x, w), dilated, atol=1e-5)


def test_conv_transpose_gradients_equal_dilated_form():
    x, w = _rand(5, (2, 4, 4, 3)), _rand(6, (3, 3, 3, 2))

    def dilated(x, w):
        return lax.conv_general_dilated(x, w[::-1, ::-1], (1, 1), [(1, 2), (1, 2)], lhs_dilation=(2, 2),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    target = _rand(7, (2, 8, 8, 2))
    loss = lambda f: lambda x, w: jnp.sum(f(x, w) * target)  # noqa: E731
    ours = jax.grad(loss(layers.conv_transpose2d_s2), argnums=(0, 1))(x, w)
    theirs = jax.grad(loss(dilated), argnums=(0, 1))(x, w)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("k,p", [(7, 3), (3, 1)])
def test_reflect_conv_equals_valid_conv_on_reflect_padded_input(k, p):
    x, w, b = _rand(8, (2, 9, 7, 3)), _rand(9, (k, k, 3, 4)), _rand(10, (4,))
    padded = np.pad(np.asarray(x), ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    plain = lax.conv_general_dilated(padded, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    ours = layers.conv2d(x, w, b, padding=p, pad_mode="reflect")
    np.testing.assert_allclose(ours, plain + b, atol=1e-5)


def test_reflect_padding_is_torch_reflection():
    """ReflectionPad2d mirrors without repeating the edge: padded[-1] = x[1]."""
    x = jnp.arange(9.0).reshape(1, 3, 3, 1)
    top_left_tap = jnp.zeros((3, 3, 1, 1)).at[0, 0, 0, 0].set(1.0)
    out = np.asarray(layers.conv2d(x, top_left_tap, padding=1, pad_mode="reflect"))[0, :, :, 0]
    # out[i, j] = padded[i, j] = x[r(i - 1), r(j - 1)] with r(-1) = 1
    np.testing.assert_array_equal(out, [[4, 3, 4], [1, 0, 1], [4, 3, 4]])


def test_strided_zero_padded_conv_shape_and_values():
    x, w = _rand(11, (1, 8, 6, 2)), _rand(12, (3, 3, 2, 3))
    ours = layers.conv2d(x, w, stride=2, padding=1)
    padded = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = np.zeros((1, 4, 3, 3))
    for i in range(4):
        for j in range(3):
            patch = padded[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            expected[0, i, j] = np.einsum("hwi,hwio->o", patch, np.asarray(w, np.float64))
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_instance_norm_biased_variance_and_eps():
    x = _rand(13, (2, 5, 4, 3)) * 3 + 1
    xn = np.asarray(x, np.float64)
    mean = xn.mean(axis=(1, 2), keepdims=True)
    var = xn.var(axis=(1, 2), keepdims=True)  # ddof=0: biased, as torch's InstanceNorm
    np.testing.assert_allclose(layers.instance_norm(x), (xn - mean) / np.sqrt(var + 1e-5), atol=1e-5)


def test_l2_normalize_adds_eps_to_the_norm():
    x = jnp.array([3.0, 4.0])
    np.testing.assert_allclose(layers.l2_normalize(x, eps=1.0), [0.5, 2.0 / 3.0], rtol=1e-6)


def test_kernel_matrix_is_torch_view_order():
    oihw = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    hwio = jnp.asarray(oihw.transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(layers.kernel_matrix(hwio), oihw.reshape(2, -1))


def test_power_iteration_and_sigma_match_numpy():
    w = _rand(14, (4, 4, 3, 5))
    u = layers.l2_normalize(_rand(15, (5,)))
    v = layers.l2_normalize(_rand(16, (48,)))
    mat = np.asarray(layers.kernel_matrix(w), np.float64)
    v_np = mat.T @ np.asarray(u, np.float64)
    v_np /= np.linalg.norm(v_np) + 1e-12
    u_np = mat @ v_np
    u_np /= np.linalg.norm(u_np) + 1e-12
    u2, v2 = layers.power_iteration(w, u, v)
    np.testing.assert_allclose(u2, u_np, atol=1e-6)
    np.testing.assert_allclose(v2, v_np, atol=1e-6)
    np.testing.assert_allclose(layers.spectral_sigma(w, u2, v2), u_np @ mat @ v_np, rtol=1e-5)


def test_sigma_gradient_holds_u_v_constant():
    """d sigma / dW = u v^T (in the kernel-matrix layout) when u, v are constants of the call."""
    w = _rand(17, (4, 4, 2, 3))
    u, v = layers.l2_normalize(_rand(18, (3,))), layers.l2_normalize(_rand(19, (32,)))
    grad = jax.grad(layers.spectral_sigma)(w, u, v)
    np.testing.assert_allclose(layers.kernel_matrix(grad), np.outer(u, v), atol=1e-6)
