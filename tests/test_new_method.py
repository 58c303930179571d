"""A method added from outside the package runs through every command: train, resume, info, translate,
eval, report; convert says it has no reference. It touches no file of `instagan_jax`: this module is
all of it (docs/ARCHITECTURE.md, "Adding a method")."""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from instagan_jax import cli, methods, optim
from instagan_jax.methods.base import ImageSpec, Method, TranslateOptions, Translator, unpaired_evaluation
from instagan_jax.nn.build import abstract, apply, create

NETWORKS = ("G_A", "G_B")  # the generator names `trained.TrainedModel.generators` knows


class Pointwise(nnx.Module):
    """A 1x1 conv and tanh: image -> image."""

    def __init__(self, model, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(model.image_channels, model.image_channels, (1, 1), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.tanh(self.conv(x))


@dataclasses.dataclass(frozen=True)
class Spec(ImageSpec):
    @functools.cached_property
    def graphdef(self) -> nnx.GraphDef:
        return nnx.graphdef(abstract(Pointwise, self.model))


@flax.struct.dataclass
class State:
    step: jax.Array
    params: dict[str, nnx.State]
    opt: dict[str, Any]


def init_state(spec: Spec, seed: int = 0) -> State:
    params = {name: nnx.state(create(Pointwise, spec.model, seed * 2 + i), nnx.Param) for i, name in enumerate(NETWORKS)}
    return State(jnp.zeros((), jnp.int32), params, {n: optim.adam(spec.train).init(p) for n, p in params.items()})


def train_step(spec: Spec, state: State, batch: dict):
    """Each generator learns the identity of its domain's images (L1)."""
    lr = optim.learning_rate(spec.train, spec.iters_per_epoch, state.step)
    params, opt, metrics = {}, {}, {}
    for name, key in (("G_A", "img_A"), ("G_B", "img_B")):
        def loss(p, images=batch[key]):
            return jnp.mean(jnp.abs(nnx.merge(spec.graphdef, p)(images) - images))

        metrics[name], grads = jax.value_and_grad(loss)(state.params[name])
        params[name], opt[name] = optim.adam_step(spec.train, lr, state.params[name], state.opt[name], grads)
    visuals = {"A": {"real": batch["img_A"], "out": nnx.merge(spec.graphdef, params["G_A"])(batch["img_A"])}}
    return State(state.step + 1, params, opt), metrics, visuals


def modules(spec: Spec, state: State) -> dict[str, nnx.Module]:
    return {name: nnx.merge(spec.graphdef, state.params[name]) for name in NETWORKS}


def translator(model, options: TranslateOptions) -> Translator:
    forward, _ = model.generators(options.direction)
    return Translator(lambda img, _: (apply(forward, jnp.asarray(img)), None), masks=False)


TINY = Method(name="pointwise", title="Pointwise", networks=NETWORKS, data="images", make_spec=Spec.from_config,
              init_state=init_state, train_step=train_step, summarize=lambda m: {k: float(v) for k, v in m.items()},
              modules=modules, translator=translator, evaluate=unpaired_evaluation(translator))


@pytest.fixture(scope="module")
def registered():
    methods.register(TINY)
    yield TINY
    methods.unregister(TINY.name)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, registered):
    config = {"name": "pointwise_shapes", "method": "pointwise", "model": {"ngf": 4, "ndf": 4, "n_blocks": 0},
              "data": {"kind": "shapes", "options": {"size": 6, "height": 24, "width": 24}, "crop_size": [16, 16],
                       "num_threads": 1},
              "train": {"batch_size": 2, "niter": 1, "niter_decay": 1},
              "log": {"log_every": 1, "sample_every": 2, "checkpoint_every": 2}}
    path = tmp_path_factory.mktemp("config") / "pointwise.json"
    path.write_text(json.dumps(config))
    return path


def _run(capsys, *argv) -> str:
    capsys.readouterr()
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_a_registered_method_is_known_and_a_builtin_name_is_refused(registered):
    assert "pointwise" in methods.names() and methods.get("pointwise") is registered
    with pytest.raises(ValueError, match="method 'instagan' is built in"):
        methods.register(dataclasses.replace(registered, name="instagan"))


def test_a_new_method_runs_through_every_command(config_file, tmp_path, capsys):
    workdir = tmp_path / "run"
    printed = _run(capsys, "train", "--config", config_file, "--workdir", workdir, "--steps", 2, "--no-progress")
    assert "now at iteration 2" in printed
    assert "resuming from" in _run(capsys, "train", "--config", config_file, "--workdir", workdir, "--steps", 3,
                                   "--no-progress")
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3] and all(np.isfinite(line["G_A"]) for line in lines)
    assert (workdir / "samples" / "step_0000002.png").is_file()
    info = json.loads(_run(capsys, "info", workdir))
    assert info["step"] == 3 and set(info["param_sum_of_squares"]) == set(NETWORKS)

    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 28, 3), np.uint8)).save(photos / "p.png")
    printed = _run(capsys, "translate", photos, "--workdir", workdir, "--out", tmp_path / "out", "--direction", "BtoA",
                   "--no-progress")
    assert "Pointwise" in printed and np.asarray(Image.open(tmp_path / "out" / "images" / "p.png")).shape == (20, 28, 3)
    assert cli.main(["translate", str(photos), "--workdir", str(workdir), "--out", str(tmp_path / "x"),
                     "--ins-per", "2"]) == 2
    assert "--ins-per must be at least 1 and goes with an InstaGAN run" in capsys.readouterr().err

    printed = _run(capsys, "eval", "--workdir", workdir, "--num", 2, "--batch-size", 2, "--no-progress",
                   "--out", tmp_path / "eval.json")
    results = json.loads((tmp_path / "eval.json").read_text())
    assert results["method"] == "pointwise" and list(results["directions"]) == ["AtoB", "BtoA"]
    assert results["directions"]["AtoB"]["images"] == 2 and "mask IoU" not in printed
    assert "PSNR outside the input masks (dB)" in printed
    assert cli.main(["eval", "--workdir", str(workdir), "--classifier-dir", str(tmp_path / "c")]) == 2
    assert "--classifier-dir goes with a LOMIT run, not a Pointwise run" in capsys.readouterr().err

    _run(capsys, "eval", "--workdir", workdir, "--num", 2, "--no-progress")  # into RUN/eval/ for the report
    assert "report:" in _run(capsys, "report", workdir)
    assert "AtoB" in (workdir / "report.html").read_text()
    pytest.importorskip("torch", reason="convert needs PyTorch before it reads the run")
    assert cli.main(["convert", "--to-torch", "--workdir", str(workdir), "--out", str(tmp_path / "pth")]) == 2
    assert "a Pointwise run has no PyTorch reference here" in capsys.readouterr().err
