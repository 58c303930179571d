"""Reference state_dict import/export; `instagan convert` both ways and `instagan train --init-from`."""

import dataclasses
import importlib.util
import json
import re
import sys

import jax
import numpy as np
import pytest
from conftest import SHARED, TINY, TINY_RUN
from flax import nnx

from instagan_jax import cli, convert, torch_io, trained
from instagan_jax.loop import train
from instagan_jax.methods import config_from_dict
from instagan_jax.methods.instagan import reference
from instagan_jax.methods.instagan.config import InstaganModel
from instagan_jax.methods.instagan.inference import translate
from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
from instagan_jax.methods.instagan.parity import load_fixture
from instagan_jax.nn.build import ResnetModel, abstract, create, x64_scope
from instagan_jax.parity.common import to_nchw, to_nhwc

REFERENCE_NETWORKS = SHARED / "reference" / "instagan-pytorch" / "models" / "networks.py"


@pytest.mark.parametrize("cls", [SetGenerator, SetDiscriminator])
def test_round_trip_through_reference_layout(cls):
    source = create(cls, TINY, 3)
    state_dict = reference.to_reference(source)
    target = abstract(cls, TINY)
    reference.load_reference(target, state_dict)
    again = reference.to_reference(target)
    assert list(again) == list(state_dict)
    for key, value in state_dict.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)


def test_reference_keys_and_layouts():
    sd = reference.to_reference(create(SetGenerator, TINY, 0))
    ngf = TINY.ngf
    assert list(sd)[:2] == ["encoder_img.1.weight", "encoder_img.1.bias"]
    assert sd["encoder_img.1.weight"].shape == (ngf, 3, 7, 7)  # OIHW
    assert sd["encoder_seg.1.weight"].shape == (ngf, 1, 7, 7)
    assert sd["encoder_img.10.conv_block.5.weight"].shape == (4 * ngf, 4 * ngf, 3, 3)
    assert sd["decoder_img.0.weight"].shape == (8 * ngf, 4 * ngf, 3, 3)  # ConvTranspose: (in, out, kh, kw)
    assert sd["decoder_seg.0.weight"].shape == (12 * ngf, 6 * ngf, 3, 3)
    assert sd["decoder_seg.7.weight"].shape == (1, 3 * ngf, 7, 7)
    dsd = reference.to_reference(create(SetDiscriminator, TINY, 0))
    assert list(dsd)[:4] == [f"feature_img.0.module.{leaf}" for leaf in ("bias", "weight_u", "weight_v", "weight_bar")]
    assert dsd["classifier.0.module.weight_v"].shape == (8 * TINY.ndf * 16,)
    assert dsd["classifier.3.module.weight_u"].shape == (1,)


def test_spectral_vectors_are_unit_norm_at_init():
    dsd = reference.to_reference(create(SetDiscriminator, TINY, 0))
    for key in dsd:
        if key.endswith(("weight_u", "weight_v")):
            assert np.linalg.norm(dsd[key]) == pytest.approx(1.0, abs=1e-5), key


def test_data_parallel_prefix_is_stripped():
    sd = reference.to_reference(create(SetGenerator, TINY, 1))
    target = abstract(SetGenerator, TINY)
    reference.load_reference(target, {f"module.{k}": v for k, v in sd.items()})
    np.testing.assert_array_equal(reference.to_reference(target)["decoder_img.7.bias"], sd["decoder_img.7.bias"])


def test_missing_and_unexpected_keys_are_named():
    sd = reference.to_reference(create(SetGenerator, TINY, 1))
    sd.pop("encoder_seg.4.bias")
    sd["encoder_seg.99.bias"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing \['encoder_seg.4.bias'\].*unexpected \['encoder_seg.99.bias'\]"):
        reference.load_reference(abstract(SetGenerator, TINY), sd)


def test_shape_mismatch_names_the_key():
    sd = reference.to_reference(create(SetDiscriminator, TINY, 1))
    sd["classifier.0.module.weight_bar"] = sd["classifier.0.module.weight_bar"][:, :-1]
    with pytest.raises(ValueError, match="classifier.0.module.weight_bar"):
        reference.load_reference(abstract(SetDiscriminator, TINY), sd)


def test_reading_pth_without_torch_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'instagan-jax\[torch\]'.*pip install -e '\.\[torch\]'"):
        torch_io.read_torch_state_dict(tmp_path / "latest_net_G_A.pth")


def test_convert_without_torch_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)
    assert cli.main(["convert", "--from-torch", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("instagan convert: error: ") and "pip install 'instagan-jax[torch]'" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def _random_reference(name: str, model: ResnetModel, seed: int = 0) -> dict[str, np.ndarray]:
    """A reference state_dict of network `name` with random values (no compiling, unlike `create`)."""
    module = abstract(SetGenerator if name[0] == "G" else SetDiscriminator, model)
    rng = np.random.default_rng(seed)
    nnx.update(module, jax.tree.map(lambda x: rng.standard_normal(x.shape).astype(x.dtype), nnx.state(module)))
    return reference.to_reference(module)


def _state_dicts(model: ResnetModel) -> dict[str, dict[str, np.ndarray]]:
    return {name: _random_reference(name, model, i) for i, name in enumerate(reference.NETWORKS)}


def test_architecture_is_read_off_the_weights():
    odd = ResnetModel(ngf=3, ndf=5, n_blocks=2, image_channels=1)
    state_dicts = _state_dicts(odd)
    assert reference.infer_model_config(state_dicts, ResnetModel(dtype="float64")) == dataclasses.replace(
        odd, dtype="float64")
    generators_only = {name: state_dicts[name] for name in ("G_A", "G_B")}
    assert reference.infer_model_config(generators_only, ResnetModel(ndf=7)).ndf == 7  # ndf: the config's
    state_dicts["G_B"] = _random_reference("G_B", dataclasses.replace(odd, ngf=4))
    with pytest.raises(ValueError, match=r"inconsistent ngf: G_B encoder_img.1.weight \(4, 1, 7, 7\) gives 4, "
                                         r"G_A encoder_img.1.weight \(3, 1, 7, 7\) gives 3"):
        reference.infer_model_config(state_dicts)
    state_dicts["G_B"] = state_dicts["G_A"]
    state_dicts["D_B"] = _random_reference("D_B", dataclasses.replace(odd, image_channels=3))
    with pytest.raises(ValueError, match="inconsistent image_channels: D_B feature_img.0.module.weight_bar"):
        reference.infer_model_config(state_dicts)
    with pytest.raises(KeyError, match="D_A: no 'feature_img.0.module.weight_bar'"):
        reference.infer_model_config({"D_A": state_dicts["G_A"]})


def reference_files(sources, epoch=None):
    """InstaGAN's files: G_A, G_B needed, D_A, D_B optional."""
    return torch_io.reference_files(sources, epoch, reference.NETWORKS, reference.GENERATORS)


def test_reference_files_choose_the_epoch(tmp_path):
    for epoch in ("latest", "5", "10"):
        for name in ("G_A", "G_B", "D_A"):
            (tmp_path / f"{epoch}_net_{name}.pth").touch()
    assert reference_files([tmp_path])["G_A"].name == "latest_net_G_A.pth"
    assert list(reference_files([tmp_path], "5")) == ["G_A", "G_B", "D_A"]
    for name in ("G_A", "G_B", "D_A"):
        (tmp_path / f"latest_net_{name}.pth").unlink()
    assert reference_files([tmp_path], "latest")["G_B"].name == "10_net_G_B.pth"  # 10 > 5
    with pytest.raises(FileNotFoundError, match=r"no epoch '7' in .* it has epochs \['10', '5'\]"):
        reference_files([tmp_path], "7")
    (tmp_path / "10_net_G_B.pth").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing .*10_net_G_B.pth \(needed: G_A, G_B\)"):
        reference_files([tmp_path])
    with pytest.raises(FileNotFoundError, match="no file for G_B among"):
        reference_files([tmp_path / "10_net_G_A.pth"])
    (tmp_path / "readme.pth").touch()
    with pytest.raises(ValueError, match="readme.pth: cannot tell which network"):
        reference_files([tmp_path / "5_net_G_A.pth", tmp_path / "readme.pth"])
    with pytest.raises(ValueError, match="two files for G_A"):
        reference_files([tmp_path / "5_net_G_A.pth", tmp_path / "10_net_G_A.pth"])
    with pytest.raises(ValueError, match="--epoch 5 chooses among the files of one folder"):
        reference_files([tmp_path / "5_net_G_A.pth"], "5")


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="the .pth tests need PyTorch: pip install -e '.[torch]'")


def _run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_same_networks(a: dict, b: dict, names=reference.NETWORKS) -> None:
    for name in names:
        sd_a, sd_b = reference.to_reference(a[name]), reference.to_reference(b[name])
        assert list(sd_a) == list(sd_b), name
        for key in sd_a:
            np.testing.assert_array_equal(sd_a[key], sd_b[key], err_msg=f"{name} {key}")


@pytest.fixture(scope="module")
def exported(torch, tiny_run, tmp_path_factory):
    """The tiny run's newest checkpoint written as reference .pth files."""
    out = tmp_path_factory.mktemp("exported")
    paths = convert.to_torch(out, workdir=tiny_run)
    assert [p.name for p in paths] == [f"3_net_{name}.pth" for name in reference.NETWORKS]
    return out


def test_round_trip_through_pth_files_is_exact(exported, tiny_run, tmp_path, capsys):
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(TINY_RUN))
    run = tmp_path / "run"
    code, out, err = _run_cli(capsys, "convert", "--from-torch", exported, "--out", run, "--config", config_file)
    assert code == 0, err
    assert "model (read off the weights): ngf=4 ndf=4 n_blocks=1 image_channels=3 dtype=float32" in out
    assert "freshly" not in out
    source, converted = trained.load_trained(workdir=tiny_run), trained.load_trained(workdir=run)
    assert converted.step == 0 and converted.config == source.config
    _assert_same_networks(source.networks, converted.networks)  # SN u, v included
    _, _, state, _ = trained.restore_state(workdir=run)
    assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(state.opt))  # fresh Adam
    code, _, err = _run_cli(capsys, "convert", "--from-torch", exported, "--out", run)
    assert code == 2 and f"{run / 'checkpoints'} already has checkpoints [0]" in err
    code, _, err = _run_cli(capsys, "convert", "--to-torch", "--workdir", tiny_run, "--out", exported)
    assert code == 2 and "not overwriting" in err and "3_net_G_A.pth" in err


def _reference_networks_module():
    spec = importlib.util.spec_from_file_location("reference_networks", REFERENCE_NETWORKS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exported_files_load_strictly_into_the_reference(exported, tiny_run, torch):
    if not REFERENCE_NETWORKS.exists():
        pytest.skip(f"{REFERENCE_NETWORKS} not found: the reference source lives in ../shared")
    networks = _reference_networks_module()
    model = config_from_dict(TINY_RUN).model
    norm = networks.get_norm_layer("instance")
    ours = trained.load_trained(workdir=tiny_run).networks
    for name in reference.NETWORKS:
        if name[0] == "G":
            net = networks.ResnetSetGenerator(3, 3, model.ngf, norm_layer=norm, n_blocks=model.n_blocks)
        else:
            net = networks.NLayerSetDiscriminator(3, model.ndf, n_layers=3, norm_layer=norm)
        state = torch.load(exported / f"3_net_{name}.pth", weights_only=True)
        net.load_state_dict(state, strict=True)
        expected = reference.to_reference(ours[name])
        for key, value in net.state_dict().items():
            assert value.dtype == torch.float32, key
            np.testing.assert_array_equal(value.numpy(), expected[key], err_msg=f"{name} {key}")


def test_data_parallel_files_without_discriminators(torch, tmp_path, capsys):
    generators = {name: _random_reference(name, TINY, i) for i, name in enumerate(("G_A", "G_B"))}
    files = []
    for name, state_dict in generators.items():
        files.append(tmp_path / f"200_net_{name}.pth")
        torch.save({f"module.{k}": torch.from_numpy(v) for k, v in state_dict.items()}, files[-1])
    code, out, err = _run_cli(capsys, "convert", "--from-torch", *files, "--out", tmp_path / "run",
                              "--set", "data.crop_size=[32,32]", "--set", "model.ndf=4")
    assert code == 0, err
    assert "no file for D_A and D_B: freshly initialised" in out
    model = trained.load_trained(workdir=tmp_path / "run")
    assert model.config.model == InstaganModel(**dataclasses.asdict(TINY))  # ngf, n_blocks from the weights, ndf from the config
    for name, state_dict in generators.items():
        again = reference.to_reference(model.networks[name])
        for key in state_dict:
            np.testing.assert_array_equal(again[key], state_dict[key], err_msg=f"{name} {key}")


def test_a_model_beyond_the_reference_is_refused_both_ways(torch, tmp_path, capsys):
    """`model.upsample=resize` has no counterpart in the reference: refused before a file is read or written."""
    generators = {name: _random_reference(name, TINY, i) for i, name in enumerate(("G_A", "G_B"))}
    for name, state_dict in generators.items():
        torch.save({k: torch.from_numpy(v) for k, v in state_dict.items()}, tmp_path / f"1_net_{name}.pth")
    code, _, err = _run_cli(capsys, "convert", "--from-torch", tmp_path, "--out", tmp_path / "run",
                            "--set", "model.upsample=resize")
    assert code == 2 and "model.upsample=resize has no counterpart in the PyTorch reference" in err, err
    assert not (tmp_path / "run").exists()
    config = config_from_dict({**TINY_RUN, "model": {**TINY_RUN["model"], "upsample": "resize"}})
    with pytest.raises(ValueError, match="model.upsample=resize has no counterpart"):
        convert.reference_state_dicts(config, state=None)  # refused before the state is looked at


def test_unreadable_and_misfitting_files_are_named(torch, tmp_path, capsys):
    generators = {name: _random_reference(name, TINY, i) for i, name in enumerate(("G_A", "G_B"))}
    generators["G_B"]["decoder_img.3.weight"] = generators["G_B"]["decoder_img.3.weight"][:, :-1]
    for name, state_dict in generators.items():
        torch.save({k: torch.from_numpy(v) for k, v in state_dict.items()}, tmp_path / f"1_net_{name}.pth")
    (tmp_path / "junk_net_G_A.pth").write_text("not a pickle")
    torch.save({"model": {}, "epoch": 3}, tmp_path / "nested_net_G_A.pth")
    whole = (tmp_path / "1_net_G_B.pth").read_bytes()
    (tmp_path / "cut_net_G_A.pth").write_bytes(whole[: len(whole) // 2])  # a truncated download
    for first, message in (("1_net_G_A.pth", r"G_B: decoder_img.3.weight: reference shape \(16, 7, 3, 3\)"),
                           ("junk_net_G_A.pth", "junk_net_G_A.pth: not a PyTorch state_dict file"),
                           ("nested_net_G_A.pth", "nested_net_G_A.pth: expected a state_dict of tensors; 'model'"),
                           ("cut_net_G_A.pth", "cut_net_G_A.pth: (damaged PyTorch file|not a PyTorch state_dict)")):
        code, _, err = _run_cli(capsys, "convert", "--from-torch", tmp_path / first, tmp_path / "1_net_G_B.pth",
                                "--out", tmp_path / "run")
        assert code == 2 and re.search(message, err), err
    assert not (tmp_path / "run").exists()


def test_fixture_inference_from_converted_pth_files(torch, reference_small_f64, tmp_path, capsys):
    fixture = load_fixture(reference_small_f64)
    folder = tmp_path / "reference_checkpoints"
    folder.mkdir()
    for name in reference.NETWORKS:
        prefix = f"init/{name}/"
        torch.save({k[len(prefix):]: torch.from_numpy(v) for k, v in fixture.arrays.items() if k.startswith(prefix)},
                   folder / f"latest_net_{name}.pth")
    code, out, err = _run_cli(capsys, "convert", "--from-torch", folder, "--out", tmp_path / "run",
                              "--set", "model.dtype=float64")
    assert code == 0, err
    model = trained.load_trained(workdir=tmp_path / "run")
    assert model.config.model == fixture.config
    mode, tolerance = fixture.tolerances["outputs"]
    assert mode == "atol"
    with x64_scope(model.config.model.dtype):
        for src, dst, direction in (("A", "B", "AtoB"), ("B", "A", "BtoA")):
            masks = fixture.arrays[f"input/{src}_segs_raw"][..., None]  # (B,K,H,W,1)
            out = translate(*model.generators(direction), to_nhwc(fixture.arrays[f"input/{src}_img"]), masks,
                            ins_per=fixture.ins_per, ins_max=fixture.ins_max)
            assert out.fake_img.dtype == np.float64
            for key, ours in ((f"test/fake_{dst}_img", to_nchw(out.fake_img)),
                              (f"test/rec_{src}_img", to_nchw(out.rec_img)),
                              (f"test/fake_{dst}_seg", to_nchw(out.fake_union)),
                              (f"test/fake_{dst}_seg_mul", np.asarray(out.fake_masks)[..., 0])):
                np.testing.assert_allclose(ours, fixture.arrays[key], rtol=0, atol=tolerance, err_msg=key)


def test_init_from_starts_fresh_from_the_source_networks(tiny_run, tmp_path, capsys):
    config = config_from_dict(TINY_RUN)
    run = tmp_path / "finetune"
    train(config, run, steps=0, progress=False, init_from=tiny_run / "checkpoints" / "2")
    assert "starting from the networks of" in capsys.readouterr().out
    source, _, source_state, _ = trained.restore_state(checkpoint=tiny_run / "checkpoints" / "2")
    config_0, step, state, _ = trained.restore_state(workdir=run)
    assert step == 0 and int(state.step) == 0 and config_0 == config
    _assert_same_networks(trained.networks_from_state(source, source_state), trained.networks_from_state(config, state))
    assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(state.opt))
    assert int(state.pools["A"].count) == int(state.pools["B"].count) == 0
    summary = train(config, run, steps=1, progress=False, init_from=tiny_run)
    assert f"{run} has checkpoints: resuming, --init-from {tiny_run} is ignored" in capsys.readouterr().out
    assert (summary.start_step, summary.step) == (0, 1)


def test_init_from_with_another_model_names_the_keys_before_the_data(tiny_run, tmp_path):
    config = config_from_dict({**TINY_RUN, "model": {"ngf": 8, "ndf": 4, "n_blocks": 2},
                               "data": {**TINY_RUN["data"], "kind": "folder", "options": {"root": str(tmp_path / "none")}}})
    with pytest.raises(ValueError, match=r"its model differs .*model.n_blocks: 1 there, 2 here; model.ngf: 4 there, 8 here"):
        train(config, tmp_path / "run", steps=1, progress=False, init_from=tiny_run)
