"""LOMIT: the checks of LOMIT.md that need no reference code (HAdaIN limits, the gradient penalty against a
closed form, the mask regularisers by hand, user intervention) and one compiled training step."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from instagan_jax import cli, methods, trained
from instagan_jax.methods import load_config
from instagan_jax.methods.lomit import losses, networks
from instagan_jax.methods.lomit import step as lomit
from instagan_jax.nn.build import create

TINY_LOMIT = ["method=lomit", "model.ngf=4", "model.ndf=4", "model.n_blocks=1", "model.mask_layers=1",
              "model.d_layers=4", "model.style_dim=3", "train.batch_size=3", "train.n_critic=2",
              "data.crop_size=[32,32]"]


def tiny_spec(*overrides: str) -> lomit.Spec:
    return methods.get("lomit").make_spec(load_config("default", [*TINY_LOMIT, *overrides]), 10.0)


def random_batch(batch: int = 3, size: int = 32) -> dict[str, jax.Array]:
    return {"img": jax.random.uniform(jax.random.key(0), (batch, size, size, 3), minval=-1.0, maxval=1.0),
            "labels": jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]][:batch])}


def test_hadain_is_the_background_adain_at_mask_0_the_foreground_one_at_1_and_mixes_between():
    content = jax.random.normal(jax.random.key(0), (2, 4, 4, 3)) * 3.0 + 1.0
    fg = (jnp.array([[1.0, -2.0, 0.5]] * 2), jnp.array([[2.0, 0.5, 1.0]] * 2))
    bg = (jnp.array([[-1.0, 0.0, 3.0]] * 2), jnp.array([[0.1, 4.0, 1.5]] * 2))
    zeros, ones = jnp.zeros((2, 4, 4, 1)), jnp.ones((2, 4, 4, 1))
    np.testing.assert_allclose(networks.hadain(zeros, content, fg, bg), networks.adain(content, *bg), atol=1e-6)
    np.testing.assert_allclose(networks.hadain(ones, content, fg, bg), networks.adain(content, *fg), atol=1e-6)
    half = jnp.full((2, 4, 4, 1), 0.25)
    expected = 0.25 * networks.adain(content, *fg) + 0.75 * networks.adain(content, *bg)
    np.testing.assert_allclose(networks.hadain(half, content, fg, bg), expected, atol=1e-6)
    # AdaIN's output has the style's per-channel mean and std (biased, over H and W)
    out = networks.adain(content, *fg)
    np.testing.assert_allclose(jnp.mean(out, axis=(1, 2)), fg[0], atol=1e-5)
    np.testing.assert_allclose(jnp.std(out, axis=(1, 2)), fg[1], rtol=1e-3)


def test_hadain_mixes_per_pixel():
    content = jax.random.normal(jax.random.key(1), (1, 2, 2, 1))
    fg, bg = (jnp.array([[5.0]]), jnp.array([[1.0]])), (jnp.array([[-5.0]]), jnp.array([[1.0]]))
    mask = jnp.array([1.0, 0.0, 0.0, 1.0]).reshape(1, 2, 2, 1)
    out = np.asarray(networks.hadain(mask, content, fg, bg)).ravel()
    np.testing.assert_allclose(out[[0, 3]], np.asarray(networks.adain(content, *fg)).ravel()[[0, 3]], atol=1e-6)
    np.testing.assert_allclose(out[[1, 2]], np.asarray(networks.adain(content, *bg)).ravel()[[1, 2]], atol=1e-6)


def test_gradient_penalty_of_a_linear_critic_is_its_closed_form():
    weights = jax.random.normal(jax.random.key(2), (1, 4, 4, 3))
    x_hat = jax.random.normal(jax.random.key(3), (5, 4, 4, 3))
    penalty = losses.gradient_penalty(lambda x: jnp.sum(x * weights, axis=(1, 2, 3)), x_hat)
    np.testing.assert_allclose(penalty, (jnp.linalg.norm(weights) - 1.0) ** 2, rtol=1e-6)


def test_gradient_penalty_of_a_quadratic_critic_uses_each_samples_own_norm():
    x_hat = jnp.stack([jnp.full((2, 2, 1), 0.5), jnp.full((2, 2, 1), 2.0)])  # grad of sum(x^2)/2 is x
    penalty = losses.gradient_penalty(lambda x: 0.5 * jnp.sum(jnp.square(x), axis=(1, 2, 3)), x_hat)
    np.testing.assert_allclose(penalty, ((1.0 - 1.0) ** 2 + (4.0 - 1.0) ** 2) / 2, rtol=1e-6)


def test_gradient_penalty_differentiates_through_the_real_discriminator():
    spec = tiny_spec()
    d = create(networks.Discriminator, spec.sized_model, 0)
    params = nnx.state(d, nnx.Param)
    x_hat = jax.random.normal(jax.random.key(4), (2, 32, 32, 3))

    def penalty(p):
        return losses.gradient_penalty(lambda x: nnx.merge(spec.graphdefs["D"], p)(x)[0], x_hat)

    grads = jax.grad(penalty)(params)
    assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) > 0


def test_interpolate_takes_one_alpha_per_sample():
    real, fake = jnp.ones((2, 2, 2, 1)), jnp.zeros((2, 2, 2, 1))
    out = losses.interpolate(real, fake, jnp.array([0.25, 1.0]))
    np.testing.assert_allclose(out[:, 0, 0, 0], [0.25, 1.0])


def test_mask_regularisers_by_hand():
    # one image of 3 pixels: contents (1, 0), (1, 0), (0, 1): cos = 1 within the first two, 0 with the third
    content = jnp.array([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]]).reshape(1, 1, 3, 2)
    mask = jnp.array([0.2, 0.6, 1.0]).reshape(1, 1, 3, 1)
    # pairs with cos 1: (0, 1), (1, 0): |0.2 - 0.6| twice; the diagonal is 0; the rest has cos 0
    np.testing.assert_allclose(losses.mask_similarity(mask, content), 2 * 0.4 / 9, rtol=1e-6)
    np.testing.assert_allclose(losses.mask_size(mask), 0.6, rtol=1e-6)
    opposite = jnp.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]).reshape(1, 1, 3, 2)  # cos -1: differences pay
    np.testing.assert_allclose(losses.mask_similarity(mask, opposite), -2 * 0.4 / 9, rtol=1e-6)


def test_mask_similarity_holds_the_content_constant():
    content = jax.random.normal(jax.random.key(5), (1, 2, 2, 4))
    mask = jax.random.uniform(jax.random.key(6), (1, 2, 2, 1))
    grad = jax.grad(lambda c: losses.mask_similarity(mask, c))(content)
    assert float(jnp.max(jnp.abs(grad))) == 0.0


def test_attribute_loss_is_the_summed_binary_cross_entropy():
    logits, labels = jnp.array([[2.0, -1.0], [0.0, 3.0]]), jnp.array([[1.0, 0.0], [0.0, 1.0]])
    p = jax.nn.sigmoid(logits)
    expected = -jnp.mean(jnp.sum(labels * jnp.log(p) + (1 - labels) * jnp.log(1 - p), axis=1))
    np.testing.assert_allclose(losses.attribute_loss(logits, labels), expected, rtol=1e-6)


def test_a_user_mask_zero_in_a_region_gives_the_self_translations_decoder_input_there():
    """Paper §5.3: where the user's mask is 0, HAdaIN takes the input's own background style, so the
    decoder's input there is the same as the self-translation's under that mask (exact); the output
    differs at most through the decoder's spatial mixing. (An untrained style encoder gives near-equal
    codes for any image, so the exemplar's foreground code here is a distinct stand-in.)"""
    spec = tiny_spec()
    g = create(networks.Generator, spec.model, 0)
    image, exemplar = random_batch()["img"][:1], random_batch()["img"][1:2]
    user_mask = jnp.ones((1, 8, 8, 1)).at[:, :, :4].set(0.0)  # left half: keep the input
    content = g.content(image)
    exemplar_fg = jnp.full((1, spec.model.style_dim), 50.0)
    translated = g.stylise(user_mask, content, exemplar_fg, g.bg_style(image, user_mask))
    own = g.stylise(user_mask, content, g.fg_style(image, user_mask), g.bg_style(image, user_mask))
    np.testing.assert_allclose(translated[:, :, :4], own[:, :, :4], atol=1e-6)
    assert float(jnp.max(jnp.abs(translated[:, :, 4:] - own[:, :, 4:]))) > 1e-3  # the exemplar's style elsewhere
    out = lomit.translate(g, image, exemplar, mask=user_mask)
    np.testing.assert_array_equal(out["mask"], user_mask)
    learned = lomit.translate(g, jnp.concatenate([image, exemplar]), exemplar)  # one exemplar for a batch
    assert learned["output"].shape == (2, 32, 32, 3) and learned["mask"].shape == (2, 8, 8, 1)
    assert 0.0 < float(jnp.min(learned["mask"])) and float(jnp.max(learned["mask"])) < 1.0


def test_spec_refuses_batch_1_and_sizes_the_discriminator_cannot_halve():
    with pytest.raises(ValueError, match="at least 2"):
        tiny_spec("train.batch_size=1")
    with pytest.raises(ValueError, match="multiples of 16 .the discriminator halves the image model.d_layers = 4"):
        tiny_spec("data.crop_size=[40,40]")
    with pytest.raises(ValueError, match="multiples of 32"):
        tiny_spec("data.crop_size=[48,48]", "model.d_layers=5")


@pytest.fixture(scope="module")
def stepped():
    """Two compiled iterations (n_critic 2: D in both, G in the second) at batch 3."""
    spec = tiny_spec()
    state = lomit.init_state(spec, 0)
    step = jax.jit(lambda s, b: lomit.train_step(spec, s, b))
    first, metrics1, visuals = step(state, random_batch())
    second, metrics2, _ = step(first, random_batch())
    return spec, state, first, second, jax.device_get(metrics1), jax.device_get(metrics2), visuals


def _changed(a, b) -> bool:
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_one_step_at_batch_3_has_finite_losses_and_images_of_the_batchs_shape(stepped):
    spec, _, _, _, metrics1, metrics2, visuals = stepped
    for metrics in (metrics1, metrics2):
        assert all(np.isfinite(v).all() for v in metrics.values())
    assert visuals["translation"].shape == (3, 32, 32, 3) and visuals["mask"].shape == (3, 32, 32, 1)
    assert float(jnp.max(jnp.abs(visuals["translation"]))) <= 1.0
    np.testing.assert_array_equal(visuals["exemplar"], jnp.roll(visuals["input"], 1, axis=0))
    summary = lomit.summarize(metrics2)
    assert set(summary) == set(lomit.D_TERMS + lomit.G_TERMS)
    assert set(lomit.summarize(metrics1)) == set(lomit.D_TERMS)


def test_the_generator_updates_every_n_critic_th_step_and_the_discriminator_every_step(stepped):
    _, state, first, second, metrics1, metrics2, _ = stepped
    assert not bool(metrics1["ran_G"]) and bool(metrics2["ran_G"])
    assert _changed(state.params["D"], first.params["D"]) and _changed(first.params["D"], second.params["D"])
    assert not _changed(state.params["G"], first.params["G"])
    assert _changed(first.params["G"], second.params["G"])
    assert int(first.opt["G"].count) == 0 and int(second.opt["G"].count) == 1
    assert int(second.opt["D"].count) == 2


def test_shared_style_heads_have_one_head():
    shared = create(networks.Generator, dataclasses.replace(tiny_spec().model, shared_style_heads=True), 0)
    separate = create(networks.Generator, tiny_spec().model, 0)
    assert shared.style.bg is None and separate.style.bg is not None
    x = jnp.ones((1, 32, 32, 3))
    np.testing.assert_array_equal(shared.style(x, "fg"), shared.style(x, "bg"))


CLI_TINY = [*TINY_LOMIT[1:], "train.batch_size=2", "data.options.size=6", "data.options.height=36",
            "data.options.width=36", "data.num_threads=1", "log.checkpoint_every=2", "log.log_every=1",
            "log.sample_every=2"]


def _train(workdir, steps: int) -> int:
    flags = [arg for item in CLI_TINY for arg in ("--set", item)]
    return cli.main(["train", "--config", "lomit_shapes", "--workdir", str(workdir), "--steps", str(steps),
                     "--no-progress", *flags])


def test_training_resumed_from_a_checkpoint_equals_training_straight_through(tmp_path, capsys, caplog):
    """Four iterations (generator updates at 2 and 4) straight, and 2 + 2 with a restart between: the same
    state bit for bit (parameters, batch-norm statistics, Adam, the gradient penalty's RNG, the data order)."""
    assert _train(tmp_path / "straight", 4) == 0
    assert _train(tmp_path / "resumed", 2) == 0
    assert _train(tmp_path / "resumed", 4) == 0
    _, step_a, state_a, _ = trained.restore_state(tmp_path / "straight")
    _, step_b, state_b, _ = trained.restore_state(tmp_path / "resumed")
    assert step_a == step_b == 4
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    lines = (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]
    assert "G_cls" in json.loads(lines[1]) and "G_cls" not in json.loads(lines[0])
    assert (tmp_path / "resumed" / "samples" / "step_0000004.png").is_file()
    _check_translate(tmp_path / "resumed", tmp_path, capsys, caplog)
    if importlib.util.find_spec("torch") is not None:  # --to-torch needs torch before it reads the run
        capsys.readouterr()
        assert cli.main(["convert", "--to-torch", "--workdir", str(tmp_path / "resumed"), "--out",
                         str(tmp_path / "pth")]) == 2
        assert "a LOMIT run has no PyTorch reference here" in capsys.readouterr().err
        assert not (tmp_path / "pth").exists()


def _check_translate(workdir, tmp_path, capsys, caplog) -> None:
    """`instagan translate` of a LOMIT run: images of any size with an exemplar, a user mask, the errors."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("a", (40, 56)), ("b", (33, 30))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), np.uint8)).save(photos / f"{name}.png")
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), np.uint8)).save(tmp_path / "exemplar.png")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(tmp_path / "nothing.png")
    base = ["translate", str(photos), "--workdir", str(workdir), "--exemplar", str(tmp_path / "exemplar.png"),
            "--no-progress"]
    capsys.readouterr()
    assert cli.main([*base, "--out", str(tmp_path / "out")]) == 0
    assert "exemplar" in capsys.readouterr().out
    assert np.asarray(Image.open(tmp_path / "out" / "images" / "a.png")).shape == (40, 56, 3)
    assert np.asarray(Image.open(tmp_path / "out" / "images" / "b.png")).shape == (33, 30, 3)
    caplog.clear()
    assert cli.main([*base, "--user-mask", str(tmp_path / "nothing.png"), "--out", str(tmp_path / "kept")]) == 0
    assert (tmp_path / "kept" / "images" / "a.png").is_file()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "--user-mask" in r.getMessage()]
    assert len(warned) == 1 and "nothing.png is 40x56 but" in warned[0] and "b.png is 33x30" in warned[0], warned
    assert cli.main(["translate", str(photos), "--workdir", str(workdir), "--out", str(tmp_path / "x")]) == 2
    assert "give --exemplar IMAGE" in capsys.readouterr().err
    assert cli.main([*base, "--size", "40", "40", "--out", str(tmp_path / "x")]) == 2
    assert "multiples of 16" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
