"""Run configs: the built-in files, overrides, and errors that name the bad key."""

from __future__ import annotations

import pytest

from instagan_jax.config import CONFIG_DIR, config_from_dict, differences, load_config

PAPER_TASKS = {  # name: (crop H x W, load H x W, niter, niter_decay), REFERENCE.md §5
    "jeans2skirt_ccp": ((300, 200), (330, 220), 400, 200),
    "pants2skirt_mhp": ((240, 160), (270, 180), 100, 100),
    "shp2gir_coco": ((200, 200), (220, 220), 100, 100),
}


def test_builtin_configs_have_the_reference_settings():
    assert sorted(p.stem for p in CONFIG_DIR.glob("*.json")) == ["default", *sorted(PAPER_TASKS)]
    for name, (crop, load, niter, niter_decay) in PAPER_TASKS.items():
        config = load_config(name)
        assert config.data.crop_size == crop and config.data.load_size == load, name
        assert (config.train.niter, config.train.niter_decay) == (niter, niter_decay), name
        assert (config.train.ins_max, config.train.ins_per, config.train.pool_size) == (4, 2, 50), name
        assert (config.model.ngf, config.model.ndf, config.model.n_blocks) == (64, 64, 9), name
        assert (config.train.lr, config.train.beta1) == (2e-4, 0.5), name
    assert load_config("default").data.kind == "shapes"


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
