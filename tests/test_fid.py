"""FID and KID against closed forms and brute force; the feature network loader."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg

from instagan_jax import fid


def test_fid_of_diagonal_gaussians_is_a_closed_sum():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    var1, var2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)  # 7.25 + 4 + 1
    assert fid.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, abs=1e-10)
    assert expected == pytest.approx(12.25)


def test_fid_of_identical_statistics_is_zero_even_when_singular():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(5, 8))  # 5 samples in 8 dimensions: a singular covariance
    mu, sigma = fid.feature_statistics(features)
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_fid_of_full_covariances_matches_the_definition():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    s1, s2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)  # not commuting
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    direct = np.real(np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2))) + np.sum((mu1 - mu2) ** 2)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-8)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2 with standard deviations s
    assert fid.frechet_distance([2.0], [[9.0]], [0.0], [[1.0]]) == pytest.approx(4.0 + 4.0)
    with pytest.raises(ValueError, match="mismatched statistics"):
        fid.frechet_distance(mu1, s1, mu2[:3], s2[:3, :3])


def _mmd2_by_hand(x, y):
    k = lambda u, v: (np.dot(u, v) / len(u) + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_unbiased_estimator_by_brute_force():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    y = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, -1.0], [1.0, 2.0]])
    assert fid.mmd2_unbiased(x, y) == pytest.approx(_mmd2_by_hand(x, y), rel=1e-12)
    # by hand: x = (1, 2), y = (0, 1), d = 1: k(1,2) = 27, k(0,1) = 1, mean k(x,y) = (1 + 8 + 1 + 27) / 4
    assert fid.mmd2_unbiased(np.array([[1.0], [2.0]]), np.array([[0.0], [1.0]])) == pytest.approx(27 + 1 - 18.5)
    # all rows of both sets: every subset is the whole set, so the std is 0
    mean, std = fid.kernel_inception_distance(x, y[:3], num_subsets=3)
    assert mean == pytest.approx(_mmd2_by_hand(x, y[:3])) and std == pytest.approx(0.0, abs=1e-12)


def test_kid_is_zero_in_expectation_for_one_distribution():
    rng = np.random.default_rng(2)
    same = [fid.mmd2_unbiased(rng.normal(size=(20, 4)), rng.normal(size=(20, 4))) for _ in range(300)]
    error = np.std(same) / np.sqrt(len(same))
    assert abs(np.mean(same)) < 4 * error
    shifted = fid.kernel_inception_distance(rng.normal(size=(40, 4)), rng.normal(1.0, 1.0, size=(40, 4)),
                                            num_subsets=10, subset_size=20)[0]
    assert shifted > 20 * error
    with pytest.raises(ValueError, match="N >= 2"):
        fid.kernel_inception_distance(np.zeros((1, 4)), np.zeros((5, 4)))


def test_conv_feature_network_from_npz(tmp_path):
    path = tmp_path / "features.npz"
    np.savez(path, **fid.random_conv_weights(seed=0, channels=(4, 8)))
    network = fid.load_feature_network(path)
    images = np.random.default_rng(3).uniform(-1, 1, size=(3, 16, 16, 3)).astype(np.float32)
    features = network(images)
    assert features.shape == (3, 8) and np.all(np.isfinite(features)) and network.name == fid.CONV_FORMAT
    np.testing.assert_allclose(network(images[:1]), features[:1], rtol=1e-5)


def test_feature_network_loader_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        fid.load_feature_network(tmp_path / "missing.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="text.npz is not a readable"):
        fid.load_feature_network(tmp_path / "text.npz")
    np.savez(tmp_path / "bare.npz", kernel=np.zeros(3))
    with pytest.raises(ValueError, match="no 'format' entry"):
        fid.load_feature_network(tmp_path / "bare.npz")
    np.savez(tmp_path / "odd.npz", format=np.array("odd"))
    with pytest.raises(ValueError, match="format 'odd'"):
        fid.load_feature_network(tmp_path / "odd.npz")
    weights = fid.random_conv_weights(channels=(4, 8))
    del weights["conv1.bias"]
    np.savez(tmp_path / "broken.npz", **weights)
    with pytest.raises(ValueError, match="broken.npz.*conv1.bias"):
        fid.load_feature_network(tmp_path / "broken.npz")


def test_registered_format_is_loaded(tmp_path):
    class Constant:
        name = "constant"

        def __call__(self, images):
            return np.ones((len(images), 2))

    fid.register_format("test-constant", lambda arrays: Constant())
    try:
        np.savez(tmp_path / "c.npz", format=np.array("test-constant"))
        assert fid.load_feature_network(tmp_path / "c.npz")(np.zeros((4, 8, 8, 3))).shape == (4, 2)
    finally:
        del fid.FORMATS["test-constant"]
