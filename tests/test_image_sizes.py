"""The image sizes the networks take, checked against the reference, and every shipped config trained for
one iteration at its own sizes."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SHARED
from data_helpers import box_mask, random_image, save

from instagan_jax import cli, methods
from instagan_jax.config import CONFIG_DIR, validate
from instagan_jax.loop import train
from instagan_jax.methods.instagan import reference
from instagan_jax.methods.instagan.networks import SetDiscriminator, SetGenerator
from instagan_jax.nn.build import ResnetModel, apply, create, x64_scope
from instagan_jax.nn.instances import mask_valid
from instagan_jax.nn.modules import check_resnet_gan_size
from instagan_jax.parity.common import to_nchw

REFERENCE_NETWORKS = SHARED / "reference" / "instagan-pytorch" / "models" / "networks.py"
SHIPPED = sorted(path.stem for path in CONFIG_DIR.glob("*.json"))
# One iteration at each config's own image sizes with a narrow model: the sizes, not the widths, are checked.
NARROW = ["model.ngf=4", "model.ndf=4", "model.n_blocks=1"]


def test_the_size_rule_is_multiples_of_4_and_at_least_24():
    for height, width in ((300, 200), (28, 24), (240, 160), (36, 44)):
        check_resnet_gan_size(height, width)
    for height, width in ((302, 200), (300, 198), (20, 24), (24, 22)):
        with pytest.raises(ValueError, match=f"image size {height}x{width}: .*multiples of 4 and at least 24"):
            check_resnet_gan_size(height, width)


def test_a_crop_off_the_rule_is_refused_before_anything_is_written(tmp_path, capsys):
    workdir = tmp_path / "run"
    code = cli.main(["train", "--config", "discs2squares", "--workdir", str(workdir),
                     "--set", "data.crop_size=[30,32]", "--steps", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "image size 30x32" in err and "multiples of 4" in err, err
    assert not workdir.exists()


@pytest.fixture(scope="module")
def reference_networks():
    torch = pytest.importorskip("torch", reason="the reference comparison needs PyTorch: pip install -e '.[torch]'")
    if not REFERENCE_NETWORKS.exists():
        pytest.skip(f"{REFERENCE_NETWORKS} not found: the reference source lives in ../shared")
    spec = importlib.util.spec_from_file_location("reference_networks", REFERENCE_NETWORKS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return torch, module


def test_the_networks_equal_the_reference_at_300x200(reference_networks):
    """jeans2skirt_ccp's crop, 300x200, is not a multiple of 8 (300 / 4 = 75 is odd): in float64 our set
    generator and set discriminator give the reference's outputs there, weights read across (to 1e-10:
    float64 rounding over 60000-pixel instance-norm sums reaches a few 1e-12; float32 would be ~1e-7)."""
    torch, networks = reference_networks
    model = ResnetModel(ngf=4, ndf=4, n_blocks=1, dtype="float64")
    norm = networks.get_norm_layer("instance")
    rng = np.random.default_rng(0)
    img = np.tanh(rng.normal(size=(1, 300, 200, 3)))
    masks = np.full((1, 3, 300, 200, 1), -1.0)
    masks[0, 0, 40:120, 30:110] = 1.0
    masks[0, 1, 150:290, 60:190] = 1.0  # slot 2 stays empty
    with x64_scope("float64"):
        gen, disc = create(SetGenerator, model, 0), create(SetDiscriminator, model, 1)
        ref_gen = networks.ResnetSetGenerator(3, 3, 4, norm_layer=norm, n_blocks=1).double()
        ref_disc = networks.NLayerSetDiscriminator(3, 4, n_layers=3, norm_layer=norm).double()
        for ours, theirs in ((gen, ref_gen), (disc, ref_disc)):
            theirs.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in reference.to_reference(ours).items()})
        valid = mask_valid(jnp.asarray(masks))
        out_img, out_masks = apply(gen, jnp.asarray(img), jnp.asarray(masks), valid)
        score = apply(disc, jnp.asarray(img), jnp.asarray(masks), valid)
    ref_input = torch.from_numpy(np.concatenate([to_nchw(img), masks[:, :2, ..., 0]], axis=1))  # valid slots only
    default, _ = torch.get_default_dtype(), torch.set_default_dtype(torch.float64)  # tensors it makes itself
    try:
        with torch.no_grad():
            ref_out = ref_gen(ref_input).numpy()
            ref_score = ref_disc(ref_input).numpy()
    finally:
        torch.set_default_dtype(default)
    assert out_img.shape == (1, 300, 200, 3) and score.shape[1:3] == (35, 23) == ref_score.shape[2:]
    np.testing.assert_allclose(np.asarray(out_img), ref_out[:, :3].transpose(0, 2, 3, 1), rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(out_masks[:, :2, ..., 0]), ref_out[:, 3:], rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.asarray(score), ref_score.transpose(0, 2, 3, 1), rtol=0, atol=1e-10)
    assert jax.config.jax_enable_x64 is False  # the scope is left as it was


def _fake_folder_layout(root, height: int, width: int):
    """trainA/B with two images each and one or two box masks per image (`*_seg`), at (height, width)."""
    rng = np.random.default_rng(0)
    for domain in "AB":
        for index in range(2):
            save(root / f"train{domain}" / f"{index}.png", random_image(rng, height, width))
            for k in range(index + 1):
                top, left = (k * height) // 3, (k * width) // 3
                save(root / f"train{domain}_seg" / f"{index}_{k}.png",
                     box_mask(height, width, top, left, top + height // 3, left + width // 3))
    return root


def _one_iteration_overrides(config, tmp_path) -> list[str]:
    """The shipped config with a narrow model and a few records of its own data kind, or (where its data
    are not here: folder and TFDS sets) a fake folder layout whose images are resized to its load size."""
    if config.data.kind in ("shapes", "attribute_shapes"):
        return [*NARROW, "data.options.size=4"]
    height, width = config.data.load_size or config.data.crop_size
    root = _fake_folder_layout(tmp_path / "data", height // 2, width // 2)
    return [*NARROW, "data.kind=folder", f'data.options={{"root": "{root}", "phase": "train"}}']


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_passes_its_own_validation(name):
    config = methods.load_config(name)
    validate(config)
    methods.get(config.method).make_spec(config, 1.0)  # the image size rule and the method's own checks


def _one_iteration_cases():
    """The paper configs (folder and TFDS data, sizes no other test trains at) in the default suite, the
    shapes configs (trained at their sizes by other tests too) among the slow tests."""
    for name in SHIPPED:
        procedural = methods.load_config(name).data.kind in ("shapes", "attribute_shapes")
        yield pytest.param(name, marks=pytest.mark.slow) if procedural else name


@pytest.mark.parametrize("name", list(_one_iteration_cases()))
def test_a_shipped_config_trains_one_iteration_at_its_sizes(name, tmp_path):
    shipped = methods.load_config(name)
    config = methods.load_config(name, _one_iteration_overrides(shipped, tmp_path))
    assert (config.data.crop_size, config.data.load_size) == (shipped.data.crop_size, shipped.data.load_size)
    summary = train(config, tmp_path / "run", steps=1, progress=False)
    assert summary.step == 1 and not summary.interrupted
