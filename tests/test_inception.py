"""The FID InceptionV3: shapes, the pytorch-fid key table, .pth -> .npz -> module, and a comparison with an
independent functional PyTorch transcription of pytorch-fid's network (random weights; the real weights
are not available to the tests)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from instagan_jax import cli, fid, inception

# Shapes read off torchvision's Inception3 / pytorch-fid's FID blocks (OIHW), independent of our table.
KNOWN_TORCH_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.bn.running_var": (192,),
}
# torchvision documents 27,161,264 parameters for inception_v3 (aux head, 1000 classes). Less the aux head
# (768*128 + 2*128 + 128*768*25 + 2*768 + 768*1000 + 1000 = 3,326,696) and the fc (2048*1000 + 1000):
TRUNK_PARAMETERS = 27_161_264 - 3_326_696 - 2_049_000
N_CONV_BLOCKS = 94


def _random_state_dict(seed: int, counters: bool = True) -> dict[str, np.ndarray]:
    """A pytorch-fid-shaped state_dict with random, well-scaled values (fc and BN counters included)."""
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in inception.torch_shapes().items():
        if key.endswith("conv.weight"):
            value = rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape)
        elif key.endswith(("bn.weight", "running_var")):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, 0.1, shape)
        sd[key] = value.astype(np.float32)
        if counters and key.endswith("running_var"):
            sd[key.replace("running_var", "num_batches_tracked")] = np.array(0, np.int64)
    sd["fc.weight"] = rng.normal(0, 0.01, (1008, 2048)).astype(np.float32)
    sd["fc.bias"] = np.zeros(1008, np.float32)
    return sd


@pytest.fixture(scope="module")
def state_dict():
    return _random_state_dict(0)


@pytest.fixture(scope="module")
def weights_npz(state_dict, tmp_path_factory):
    """Random weights in our .npz format (no torch needed)."""
    path = tmp_path_factory.mktemp("inception") / "inception_fid.npz"
    return inception.save_npz(inception.from_torch_state_dict(state_dict), path)


@pytest.fixture(scope="module")
def features(weights_npz):
    """The feature network on the random weights, compiled once for the (2, 75, 75, 3) inputs below."""
    return inception.load_inception(weights_npz)


def _torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch==2.13.0 (CPU)")


# --- torch-free -----------------------------------------------------------------------------------------

def test_key_table_matches_pytorch_fid():
    shapes = inception.torch_shapes()
    for key, shape in KNOWN_TORCH_SHAPES.items():
        assert shapes[key] == shape, key
    assert len(shapes) == 5 * N_CONV_BLOCKS
    stats = ("running_mean", "running_var")
    trainable = sum(int(np.prod(s)) for k, s in shapes.items() if not k.endswith(stats))
    assert trainable == TRUNK_PARAMETERS


def test_features_have_shape_n_by_2048(features):
    images = np.random.default_rng(1).uniform(-1, 1, (2, 75, 75, 3)).astype(np.float32)
    out = features(images)
    assert out.shape == (2, inception.FEATURE_DIM) and out.dtype == jnp.float32
    assert np.all(np.isfinite(out)) and np.all(np.asarray(out) >= 0)  # a mean of ReLUs
    with pytest.raises(ValueError, match=r"expected images \(N, H, W, 3\)"):
        features(images[..., :1])


def test_eval_loads_the_converted_file_as_its_feature_network(weights_npz, features):
    network = fid.load_feature_network(weights_npz)
    images = np.random.default_rng(1).uniform(-1, 1, (2, 75, 75, 3)).astype(np.float32)
    assert network.name == inception.NPZ_FORMAT
    np.testing.assert_array_equal(network(images), np.asarray(features(images)))


def test_convert_command_writes_the_npz_eval_reads(state_dict, tmp_path, capsys):
    torch = _torch()
    src = tmp_path / "pt_inception.pth"
    torch.save({k: torch.from_numpy(v) for k, v in state_dict.items()}, src)
    dst = tmp_path / "inception_fid.npz"
    assert cli.main(["convert", "--inception-from-torch", str(src), "--out", str(dst)]) == 0
    assert str(dst) in capsys.readouterr().out
    assert fid.load_feature_network(dst).name == inception.NPZ_FORMAT
    assert cli.main(["convert", "--inception-from-torch", str(src), "--out", str(dst), "--epoch", "3"]) == 2
    assert "takes only --out" in capsys.readouterr().err


def test_pools_ignore_padding():
    x = jnp.arange(9.0).reshape(1, 3, 3, 1)
    avg = inception.avg_pool_exclude_pad(x)[0, :, :, 0]
    assert avg[0, 0] == pytest.approx((0 + 1 + 3 + 4) / 4)  # a corner averages its 4 real pixels
    assert avg[1, 1] == pytest.approx(4.0)
    peak = inception.max_pool(-x, stride=1, padding=1)[0, :, :, 0]  # all negative: padding must not win
    assert peak[2, 2] == -4.0 and peak[0, 0] == 0.0


def test_npz_errors_name_the_file_and_keys(weights_npz, tmp_path):
    arrays = inception.load_npz(weights_npz)
    arrays.pop("mixed_6c/branch7x7_2/kernel")
    arrays["mixed_6c/extra/kernel"] = np.zeros(1, np.float32)
    bad = inception.save_npz(arrays, tmp_path / "bad.npz")
    with pytest.raises(KeyError, match=r"bad\.npz.*missing key\(s\) \['mixed_6c/branch7x7_2/kernel'\]"
                                       r".*unexpected \['mixed_6c/extra/kernel'\]"):
        inception.load_inception(bad)
    np.savez(tmp_path / "other.npz", a=np.zeros(1))
    with pytest.raises(ValueError, match=r"other\.npz: not an InceptionV3 FID weights file"):
        inception.load_inception(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        inception.load_inception(tmp_path / "missing.npz")


def test_wrong_shape_is_named():
    sd = _random_state_dict(2)
    sd["Mixed_5b.branch1x1.conv.weight"] = sd["Mixed_5b.branch1x1.conv.weight"][:32]
    with pytest.raises(ValueError, match=r"my\.pth: Mixed_5b\.branch1x1\.conv\.weight has shape "
                                         r"\(32, 192, 1, 1\), expected \(64, 192, 1, 1\)"):
        inception.from_torch_state_dict(sd, "my.pth")


# --- with torch -------------------------------------------------------------------------------------------

def test_pth_to_npz_to_module_round_trip_is_exact(tmp_path):
    torch = _torch()
    sd = _random_state_dict(3)
    src = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, src)
    dst = inception.convert_inception(src, tmp_path / "out" / "inception_fid.npz")
    assert sorted(p.name for p in dst.parent.iterdir()) == ["inception_fid.npz"]  # no temp file left
    model = inception.inception_from_arrays(inception.load_npz(dst))
    for path, var in nnx.to_flat_state(nnx.state(model)):
        path = "/".join(map(str, path))
        key = inception.torch_key(path)
        value = np.asarray(var.get_value())
        if path.endswith("kernel"):
            value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        np.testing.assert_array_equal(value, sd[key], err_msg=key)
    from_pth = inception.read_weights(src)
    for key, value in inception.load_npz(dst).items():
        np.testing.assert_array_equal(from_pth[key], value, err_msg=key)


def test_pth_key_errors_name_the_file(tmp_path):
    torch = _torch()
    sd = _random_state_dict(4)
    sd.pop("Mixed_7b.branch3x3_2a.bn.running_mean")
    sd["AuxLogits.fc.weight"] = np.zeros(1, np.float32)
    src = tmp_path / "wrong.pth"
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, src)
    with pytest.raises(KeyError, match=r"wrong\.pth.*\['Mixed_7b\.branch3x3_2a\.bn\.running_mean'\]"
                                       r".*\['AuxLogits\.fc\.weight'\]"):
        inception.convert_inception(src, tmp_path / "never.npz")
    assert not (tmp_path / "never.npz").exists()


# An independent, straightforward functional transcription of pytorch-fid's network
# (NCHW, torch.nn.functional, reading the state_dict by its own key names).

def _t_conv(F, x, sd, name, stride=1, padding=0):
    x = F.conv2d(x, sd[f"{name}.conv.weight"], stride=stride, padding=padding)
    x = F.batch_norm(x, sd[f"{name}.bn.running_mean"], sd[f"{name}.bn.running_var"], sd[f"{name}.bn.weight"],
                     sd[f"{name}.bn.bias"], training=False, eps=0.001)
    return F.relu(x)


def _t_avg(F, x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _t_mixed_a(torch, F, x, sd, p):
    c = lambda y, n, **kw: _t_conv(F, y, sd, f"{p}.{n}", **kw)  # noqa: E731
    return torch.cat([c(x, "branch1x1"), c(c(x, "branch5x5_1"), "branch5x5_2", padding=2),
                      c(c(c(x, "branch3x3dbl_1"), "branch3x3dbl_2", padding=1), "branch3x3dbl_3", padding=1),
                      c(_t_avg(F, x), "branch_pool")], 1)


def _t_mixed_b(torch, F, x, sd, p):
    c = lambda y, n, **kw: _t_conv(F, y, sd, f"{p}.{n}", **kw)  # noqa: E731
    return torch.cat([c(x, "branch3x3", stride=2),
                      c(c(c(x, "branch3x3dbl_1"), "branch3x3dbl_2", padding=1), "branch3x3dbl_3", stride=2),
                      F.max_pool2d(x, kernel_size=3, stride=2)], 1)


def _t_mixed_c(torch, F, x, sd, p):
    c = lambda y, n, **kw: _t_conv(F, y, sd, f"{p}.{n}", **kw)  # noqa: E731
    b7 = c(c(c(x, "branch7x7_1"), "branch7x7_2", padding=(0, 3)), "branch7x7_3", padding=(3, 0))
    d = c(x, "branch7x7dbl_1")
    for i, pad in ((2, (3, 0)), (3, (0, 3)), (4, (3, 0)), (5, (0, 3))):
        d = c(d, f"branch7x7dbl_{i}", padding=pad)
    return torch.cat([c(x, "branch1x1"), b7, d, c(_t_avg(F, x), "branch_pool")], 1)


def _t_mixed_d(torch, F, x, sd, p):
    c = lambda y, n, **kw: _t_conv(F, y, sd, f"{p}.{n}", **kw)  # noqa: E731
    b3 = c(c(x, "branch3x3_1"), "branch3x3_2", stride=2)
    b7 = c(c(c(x, "branch7x7x3_1"), "branch7x7x3_2", padding=(0, 3)), "branch7x7x3_3", padding=(3, 0))
    return torch.cat([b3, c(b7, "branch7x7x3_4", stride=2), F.max_pool2d(x, kernel_size=3, stride=2)], 1)


def _t_mixed_e(torch, F, x, sd, p, max_pool):
    c = lambda y, n, **kw: _t_conv(F, y, sd, f"{p}.{n}", **kw)  # noqa: E731
    b3 = c(x, "branch3x3_1")
    d = c(c(x, "branch3x3dbl_1"), "branch3x3dbl_2", padding=1)
    pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if max_pool else _t_avg(F, x)
    return torch.cat([c(x, "branch1x1"),
                      c(b3, "branch3x3_2a", padding=(0, 1)), c(b3, "branch3x3_2b", padding=(1, 0)),
                      c(d, "branch3x3dbl_3a", padding=(0, 1)), c(d, "branch3x3dbl_3b", padding=(1, 0)),
                      c(pooled, "branch_pool")], 1)


def _torch_fid_features(torch, sd, x01, resize):
    """pytorch-fid's pool3 features of NCHW images in [0, 1]."""
    F = torch.nn.functional
    x = F.interpolate(x01, size=(299, 299), mode="bilinear", align_corners=False) if resize else x01
    x = 2 * x - 1
    x = _t_conv(F, x, sd, "Conv2d_1a_3x3", stride=2)
    x = _t_conv(F, x, sd, "Conv2d_2a_3x3")
    x = F.max_pool2d(_t_conv(F, x, sd, "Conv2d_2b_3x3", padding=1), kernel_size=3, stride=2)
    x = _t_conv(F, _t_conv(F, x, sd, "Conv2d_3b_1x1"), sd, "Conv2d_4a_3x3")
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for p in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = _t_mixed_a(torch, F, x, sd, p)
    x = _t_mixed_b(torch, F, x, sd, "Mixed_6a")
    for p in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = _t_mixed_c(torch, F, x, sd, p)
    x = _t_mixed_d(torch, F, x, sd, "Mixed_7a")
    x = _t_mixed_e(torch, F, x, sd, "Mixed_7b", max_pool=False)
    x = _t_mixed_e(torch, F, x, sd, "Mixed_7c", max_pool=True)
    return F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)


def test_float64_trunk_matches_independent_torch_transcription():
    """The whole trunk at 139x139, the smallest size at which Mixed_7b/7c see 3x3 maps (so their pools
    and 3x3 convs touch padding), in float64: differences are rounding only."""
    torch = _torch()
    sd = _random_state_dict(5)
    x01 = np.random.default_rng(6).uniform(0, 1, (1, 139, 139, 3))
    with torch.no_grad():
        want = _torch_fid_features(torch, {k: torch.from_numpy(v).double() for k, v in sd.items()},
                                   torch.from_numpy(x01.transpose(0, 3, 1, 2)), resize=False).numpy()
    with jax.enable_x64(True):
        model = inception.inception_from_arrays(inception.from_torch_state_dict(sd), jnp.float64)
        got = np.asarray(jax.jit(lambda x: model(x))(jnp.asarray(2 * x01 - 1)))
    assert got.dtype == np.float64 and want.std() > 0.1
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-9 * np.abs(want).max())


def test_float32_features_with_resize_match_torch(state_dict, features):
    """End to end in float32 from 75x75, resize included (pytorch-fid resizes in [0, 1], then maps to
    [-1, 1]; ours takes [-1, 1])."""
    torch = _torch()
    x01 = np.random.default_rng(8).uniform(0, 1, (2, 75, 75, 3)).astype(np.float32)
    with torch.no_grad():
        want = _torch_fid_features(torch, {k: torch.from_numpy(v) for k, v in state_dict.items()},
                                   torch.from_numpy(x01.transpose(0, 3, 1, 2)), resize=True).numpy()
    got = np.asarray(features(2 * x01 - 1))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("size", [(40, 75), (320, 450)])
def test_resize_matches_torch_bilinear(size):
    """Up- and downsampling (no antialiasing) like F.interpolate(bilinear, align_corners=False)."""
    torch = _torch()
    x = np.random.default_rng(9).uniform(-1, 1, (1, *size, 3))
    want = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)), size=(299, 299),
                                           mode="bilinear", align_corners=False).numpy().transpose(0, 2, 3, 1)
    with jax.enable_x64(True):
        got = np.asarray(inception.resize_to_input(jnp.asarray(x)))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
