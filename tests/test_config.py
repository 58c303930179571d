"""Run configs: the built-in files, overrides, and errors that name the bad key."""

from __future__ import annotations

import re
import warnings

import pytest

from instagan_jax import methods
from instagan_jax.config import CONFIG_DIR, differences, with_defaults
from instagan_jax.methods import config_from_dict, load_config

PAPER_TASKS = {  # name: (crop H x W, load H x W, niter, niter_decay), REFERENCE.md §5
    "jeans2skirt_ccp": ((300, 200), (330, 220), 400, 200),
    "pants2skirt_mhp": ((240, 160), (270, 180), 100, 100),
    "shp2gir_coco": ((200, 200), (220, 220), 100, 100),
}


METHOD_CONFIGS = {"default": "instagan", "cyclegan_shapes": "cyclegan", "pix2pix_shapes": "pix2pix",
                  "lomit_shapes": "lomit", "discs2squares": "instagan", "discs2squares_cyclegan": "cyclegan",
                  "discs2squares_pix2pix": "pix2pix", "lomit_learnable": "lomit"}


def test_builtin_configs_have_the_reference_settings():
    assert set(p.stem for p in CONFIG_DIR.glob("*.json")) <= {*METHOD_CONFIGS, *PAPER_TASKS}
    assert {"default", "cyclegan_shapes", *PAPER_TASKS} <= set(p.stem for p in CONFIG_DIR.glob("*.json"))
    for name, (crop, load, niter, niter_decay) in PAPER_TASKS.items():
        config = load_config(name)
        assert config.data.crop_size == crop and config.data.load_size == load, name
        assert (config.train.niter, config.train.niter_decay) == (niter, niter_decay), name
        assert (config.train.ins_max, config.train.ins_per, config.train.pool_size) == (4, 2, 50), name
        assert (config.model.ngf, config.model.ndf, config.model.n_blocks) == (64, 64, 9), name
        assert (config.train.lr, config.train.beta1) == (2e-4, 0.5), name
    assert load_config("default").data.kind == "shapes"
    for name in PAPER_TASKS:
        assert load_config(name).method == "instagan", name


def test_method_configs_name_their_method_and_an_unknown_method_is_an_error():
    for path in CONFIG_DIR.glob("*.json"):
        if path.stem in METHOD_CONFIGS:
            assert load_config(path.stem).method == METHOD_CONFIGS[path.stem], path.stem
    with pytest.raises(ValueError, match="config key method: expected one of cyclegan, instagan, lomit, pix2pix, "
                                         "got .gan."):
        methods.load_config("default", ["method=gan"])


def test_overrides_parse_json_values_and_strings():
    config = load_config("default", ["train.batch_size=4", "data.crop_size=[32, 48]", "name=run7",
                                     "data.options.size=10"])
    assert config.train.batch_size == 4 and config.data.crop_size == (32, 48) and config.name == "run7"
    assert config.data.options["size"] == 10


@pytest.mark.parametrize("override, message", [
    ("train.batchsize=4", "train.batchsize"),
    ("modle.ngf=4", "modle"),
    ("train.batch_size", "key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        load_config("default", [override])


def test_unknown_config_name_lists_the_builtin_ones():
    with pytest.raises(FileNotFoundError, match="default"):
        load_config("no_such_task")


def test_differences_are_flattened_keys():
    a = config_from_dict({}).to_dict()
    b = config_from_dict({"model": {"ngf": 8}, "train": {"steps": 5}}).to_dict()
    assert differences(a, b) == {"model.ngf": (64, 8), "train.steps": (None, 5)}


@pytest.mark.parametrize("override, message", [
    ("model.ngf=abc", "model.ngf: expected an integer, got 'abc'"),
    ("train.lr=fast", "train.lr: expected a number, got 'fast'"),
    ("data.crop_size=64", "data.crop_size: expected a list of 2 integers, got 64"),
    ("train.steps=abc", "train.steps: expected an integer or null, got 'abc'"),
    ("data.flip=yes", "data.flip: expected true or false, got 'yes'"),
    ("log.checkpoint_every=0", "log.checkpoint_every: expected a value >= 1, got 0"),
    ("train.steps=-1", "train.steps: expected a value >= 0, got -1"),
    ("train.lr=NaN", "train.lr: expected a finite number, got nan"),
    ("train.unroll_groups=maybe", "train.unroll_groups: expected true, false or \"auto\""),
    ("train.ins_per=3", "train.ins_max=2 and train.ins_per=3"),
])
def test_values_of_the_wrong_type_or_range_name_the_key_value_and_expectation(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config("default", [override])


def test_integers_are_accepted_as_floats_and_null_where_allowed():
    config = load_config("default", ["train.lr=1", "train.steps=null", "data.load_size=null"])
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.train.steps is None and config.data.load_size is None


@pytest.mark.parametrize("overrides", [
    ["data.kind=folder", "data.options.root=/data/x"],
    ["data.options.root=/data/x", "data.kind=folder"],
    ['data={"kind": "folder", "options": {"root": "/data/x"}}'],
])
def test_changing_the_data_kind_drops_the_base_options(overrides):
    data = load_config("default", overrides).data
    assert data.kind == "folder" and data.options == {"root": "/data/x"}


def test_options_of_the_same_kind_are_merged():
    options = load_config("default", ["data.options.size=7"]).data.options
    assert options["size"] == 7 and options["max_instances"] == 2 and options["object_size"] == [0.1, 0.25]


def test_a_config_saved_before_a_key_existed_matches_its_default():
    """Checkpoints of older versions (e.g. without model.dtype) resume; real differences still show."""
    current = load_config("default").to_dict()
    old = {**current, "model": {k: v for k, v in current["model"].items() if k != "dtype"}}
    assert differences(old, current) == {"model.dtype": (None, "float32")}
    assert differences(with_defaults(old), current) == {}
    old["data"] = {**current["data"], "options": {"size": 5}}
    assert set(differences(with_defaults(old), current)) == {"data.options"}


def test_each_method_has_its_own_sections_and_a_key_of_another_is_named():
    """A config holds its method's keys only (docs/ARCHITECTURE.md): LOMIT's are not InstaGAN's, and a key
    of another method is an error naming whose it is."""
    instagan, lomit, pix2pix = (load_config(n).to_dict() for n in ("default", "lomit_shapes", "pix2pix_shapes"))
    assert "style_dim" not in instagan["model"] and "n_critic" not in instagan["train"]
    assert set(instagan["loss"]) == {"lambda_A", "lambda_B", "lambda_idt", "lambda_ctx"}
    assert lomit["model"]["style_dim"] == 8 and lomit["train"]["n_critic"] == 5 and "ins_per" not in lomit["train"]
    assert set(pix2pix["loss"]) == {"lambda_L1"} and pix2pix["model"]["dropout"] is True
    with pytest.raises(ValueError, match=r"config key train.ins_per is InstaGAN's, not CycleGAN's \(a cyclegan "
                                         r"config's train keys: \['batch_size'"):
        load_config("cyclegan_shapes", ["train.ins_per=2"])
    with pytest.raises(ValueError, match="config key model.dropout is pix2pix's, not LOMIT's"):
        load_config("lomit_shapes", ["model.dropout=true"])
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['model.style_dimm'\]"):
        load_config("default", ["model.style_dimm=3"])
    with pytest.raises(ValueError, match="config key model.style_dim: expected a value >= 1, got 0"):
        load_config("lomit_shapes", ["model.style_dim=0"])
    with pytest.raises(ValueError, match="ins_max must be a multiple of ins_per"):
        load_config("default", ["train.ins_max=3", "train.ins_per=2"])


def test_a_checkpoint_saved_with_every_method_s_keys_still_loads():
    """Earlier versions saved one union of all methods' keys: a key the run's method lacks is dropped, and
    named in a warning where it held another value than its default (it never had an effect)."""
    current = load_config("cyclegan_shapes").to_dict()
    union = {**current, "model": {**current["model"], "style_dim": 8, "dropout": False},
             "loss": {**current["loss"], "lambda_ctx": 1.0, "lambda_L1": 100.0, "lambda_gp": 10.0},
             "train": {**current["train"], "ins_per": 2, "n_critic": 5, "unroll_groups": "auto"}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # defaults only: no warning
        assert methods.upgrade_saved(union) == current
    union["train"]["ins_per"] = 1
    with pytest.warns(UserWarning, match=r"sets train.ins_per = 1, which a CycleGAN run never read"):
        assert methods.upgrade_saved(union) == current
    assert differences(methods.upgrade_saved({**current, "model": {"ngf": 8}}), current) == {
        "model.ngf": (8, current["model"]["ngf"]), "model.ndf": (64, current["model"]["ndf"]),
        "model.n_blocks": (9, current["model"]["n_blocks"])}  # missing keys at their defaults


def test_changing_the_method_drops_the_file_s_keys_of_the_old_one():
    """`--set method=lomit` on an InstaGAN file: its train.ins_per goes (as data.options go with data.kind);
    a key of the old method given as an override is still an error."""
    config = load_config("default", ["method=lomit", "train.batch_size=2"])
    assert config.method == "lomit" and "ins_per" not in config.to_dict()["train"] and config.train.ins_max == 2
    with pytest.raises(ValueError, match="config key train.ins_per is InstaGAN's, not LOMIT's"):
        load_config("default", ["method=lomit", "train.ins_per=1"])
    with pytest.raises(ValueError, match="config section model must be an object, got 5"):
        load_config("default", ["method=lomit", "model=5"])
