"""BioConfig / BioConverter configuration: defaults, validation, dict round trips."""

from __future__ import annotations

import dataclasses

import pytest
from torch import nn

from braingate.bio import DEFAULT_BIO_CONFIG, BioConfig, BioConverter, DaleMode, Distribution

# REFERENCES.md §H
SECTION_H_DEFAULTS = {
    "fuzzy_learning_rate_factor_nu": 0.16,
    "dampening_factor": 0.6,
    "crystal_thresh": 4.5e-5,
    "rejuvenation_parameter_dre": 8.0,
    "weight_splitting_Gamma": 0,
    "base_lr": 0.1,
    "stability_factor": 2.0,
    "lr_variability": 0.2,
    "fuzzy_lr_min": 0.5,
    "fuzzy_lr_max": 2.0,
    "fuzzy_lr_decay": 0.9995,
    "fuzzy_lr_update_freq": 100,
}
SEED_PARAMETERS = {
    "fuzzy_learning_rate_factor_nu", "fuzzy_lr_distribution", "fuzzy_lr_dynamic", "fuzzy_lr_min",
    "fuzzy_lr_max", "fuzzy_lr_update_freq", "fuzzy_lr_decay", "dampening_factor",
    "crystal_thresh", "rejuvenation_parameter_dre", "weight_splitting_Gamma",
    "weight_splitting_activation_function", "base_lr", "stability_factor", "lr_variability",
    "apply_dales_principle",
}  # fmt: skip


def test_defaults_match_references():
    cfg = BioConfig()
    for name, value in SECTION_H_DEFAULTS.items():
        assert getattr(cfg, name) == value, name
    assert cfg.dales_principle_mode is DaleMode.PRESYNAPTIC
    assert cfg.fuzzy_lr_distribution is Distribution.UNIFORM
    assert SEED_PARAMETERS <= set(BioConfig.field_names())


def test_distribution_has_ten_members():
    assert len(Distribution) == 10


def test_string_choices_are_coerced():
    cfg = BioConfig(fuzzy_lr_distribution="LOGNORMAL", dales_principle_mode="output_row")
    assert cfg.fuzzy_lr_distribution is Distribution.LOGNORMAL
    assert cfg.dales_principle_mode is DaleMode.OUTPUT_ROW


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fuzzy_learning_rate_factor_nu": -0.1}, ValueError, "fuzzy_learning_rate_factor_nu=-0.1"),
        ({"fuzzy_lr_min": 1.5, "fuzzy_lr_max": 1.0}, ValueError, "fuzzy_lr_min=1.5 > fuzzy_lr_max"),
        ({"dampening_factor": 0.0}, ValueError, "dampening_factor=0.0"),
        ({"fuzzy_lr_decay": 1.5}, ValueError, "fuzzy_lr_decay=1.5"),
        ({"fuzzy_lr_update_freq": 0}, ValueError, "fuzzy_lr_update_freq=0"),
        ({"weight_splitting_Gamma": 2.0}, TypeError, "weight_splitting_Gamma must be an int"),
        ({"weight_splitting_Gamma": -1}, ValueError, "weight_splitting_Gamma=-1"),
        ({"weight_splitting_activation_function": 3}, TypeError, "must be callable"),
        ({"fuzzy_lr_distribution": "cauchy"}, ValueError, "one of BASELINE, UNIFORM"),
        ({"base_lr": 0}, ValueError, "base_lr=0"),
        ({"apply_dales_principle": 1}, TypeError, "apply_dales_principle must be a bool"),
        ({"crystal_thresh": "x"}, TypeError, "crystal_thresh must be a number"),
    ],
)
def test_invalid_values_raise_naming_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        BioConfig(**kwargs)


def test_converter_config_paths():
    assert BioConverter().get_config() == DEFAULT_BIO_CONFIG
    custom = BioConfig(fuzzy_learning_rate_factor_nu=0.2, dampening_factor=0.7)
    assert BioConverter(config=custom).get_config() == custom
    merged = BioConverter(custom, crystal_thresh=5e-5).get_config()
    assert merged == dataclasses.replace(custom, crystal_thresh=5e-5)
    conv = BioConverter.from_dict(
        {"fuzzy_learning_rate_factor_nu": 0.2, "weight_splitting_Gamma": 2}
    )
    assert conv.get_config().weight_splitting_Gamma == 2
    conv.update_config(fuzzy_lr_distribution=Distribution.LOGNORMAL, apply_dales_principle=True)
    assert conv.get_config().fuzzy_lr_distribution is Distribution.LOGNORMAL
    assert conv.get_config().fuzzy_learning_rate_factor_nu == 0.2


def test_dict_round_trip():
    cfg = BioConfig(fuzzy_lr_distribution=Distribution.GAMMA, weight_splitting_Gamma=4)
    assert BioConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_and_invalid_updates_leave_converter_untouched():
    conv = BioConverter(dampening_factor=0.7)
    before = conv.get_config()
    with pytest.raises(TypeError, match=r"unknown parameter\(s\) \['dampening'\]; known: "):
        conv.update_config(dampening=0.5)
    with pytest.raises(ValueError, match="dampening_factor=2"):
        conv.update_config(dampening_factor=2)
    assert conv.get_config() is before
    with pytest.raises(ValueError, match="unknown BioConfig parameter"):
        BioConverter.from_dict({"nu": 0.1})
    with pytest.raises(TypeError, match="config must be a BioConfig"):
        BioConverter(config={"dampening_factor": 0.7})


def test_activation_accepts_modules_and_functions():
    assert BioConfig(weight_splitting_activation_function=nn.ReLU()).weight_splitting_Gamma == 0
    assert (
        BioConfig(weight_splitting_activation_function=abs).weight_splitting_activation_function
        is abs
    )
