"""Reference state_dict import/export."""

import importlib.util

import numpy as np
import pytest

from conftest import TINY
from instagan_jax import convert
from instagan_jax.models import SetDiscriminator, SetGenerator, abstract, create


@pytest.mark.parametrize("cls", [SetGenerator, SetDiscriminator])
def test_round_trip_through_reference_layout(cls):
    source = create(cls, TINY, 3)
    state_dict = convert.to_reference(source)
    target = abstract(cls, TINY)
    convert.load_reference(target, state_dict)
    again = convert.to_reference(target)
    assert list(again) == list(state_dict)
    for key, value in state_dict.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)


def test_reference_keys_and_layouts():
    sd = convert.to_reference(create(SetGenerator, TINY, 0))
    ngf = TINY.ngf
    assert list(sd)[:2] == ["encoder_img.1.weight", "encoder_img.1.bias"]
    assert sd["encoder_img.1.weight"].shape == (ngf, 3, 7, 7)  # OIHW
    assert sd["encoder_seg.1.weight"].shape == (ngf, 1, 7, 7)
    assert sd["encoder_img.10.conv_block.5.weight"].shape == (4 * ngf, 4 * ngf, 3, 3)
    assert sd["decoder_img.0.weight"].shape == (8 * ngf, 4 * ngf, 3, 3)  # ConvTranspose: (in, out, kh, kw)
    assert sd["decoder_seg.0.weight"].shape == (12 * ngf, 6 * ngf, 3, 3)
    assert sd["decoder_seg.7.weight"].shape == (1, 3 * ngf, 7, 7)
    dsd = convert.to_reference(create(SetDiscriminator, TINY, 0))
    assert list(dsd)[:4] == [f"feature_img.0.module.{leaf}" for leaf in ("bias", "weight_u", "weight_v", "weight_bar")]
    assert dsd["classifier.0.module.weight_v"].shape == (8 * TINY.ndf * 16,)
    assert dsd["classifier.3.module.weight_u"].shape == (1,)


def test_spectral_vectors_are_unit_norm_at_init():
    dsd = convert.to_reference(create(SetDiscriminator, TINY, 0))
    for key in dsd:
        if key.endswith(("weight_u", "weight_v")):
            assert np.linalg.norm(dsd[key]) == pytest.approx(1.0, abs=1e-5), key


def test_data_parallel_prefix_is_stripped():
    sd = convert.to_reference(create(SetGenerator, TINY, 1))
    target = abstract(SetGenerator, TINY)
    convert.load_reference(target, {f"module.{k}": v for k, v in sd.items()})
    np.testing.assert_array_equal(convert.to_reference(target)["decoder_img.7.bias"], sd["decoder_img.7.bias"])


def test_missing_and_unexpected_keys_are_named():
    sd = convert.to_reference(create(SetGenerator, TINY, 1))
    sd.pop("encoder_seg.4.bias")
    sd["encoder_seg.99.bias"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing \['encoder_seg.4.bias'\].*unexpected \['encoder_seg.99.bias'\]"):
        convert.load_reference(abstract(SetGenerator, TINY), sd)


def test_shape_mismatch_names_the_key():
    sd = convert.to_reference(create(SetDiscriminator, TINY, 1))
    sd["classifier.0.module.weight_bar"] = sd["classifier.0.module.weight_bar"][:, :-1]
    with pytest.raises(ValueError, match="classifier.0.module.weight_bar"):
        convert.load_reference(abstract(SetDiscriminator, TINY), sd)


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed")
def test_reading_pth_without_torch_says_how_to_install(tmp_path):
    with pytest.raises(ImportError, match=r"pip install -e '\.\[torch\]'"):
        convert.read_torch_state_dict(tmp_path / "latest_net_G_A.pth")
