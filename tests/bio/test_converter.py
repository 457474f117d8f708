"""BioConverter: instances, classes, re-conversion, copies, state_dict, scripting, errors."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from braingate.bio import BioConfig, BioConverter, BioModule


class MLP(nn.Module):
    def __init__(self, hidden: int = 8):
        super().__init__()
        self.fc1 = nn.Linear(5, hidden)
        self.fc2 = nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_instance_conversion_attaches_and_exposes(rng):
    model = MLP()
    out = BioConverter(fuzzy_learning_rate_factor_nu=0.1)(model)
    assert out is model
    for layer in (model.fc1, model.fc2):
        assert isinstance(layer.bio_mod, BioModule)
        assert layer.bio_mod.get_parent() is layer
        assert layer.bio_mod.config.fuzzy_learning_rate_factor_nu == 0.1
    for name in BioModule.exposed_functions:
        assert callable(getattr(model, name))
    assert model.fc1.bio_mod.context == (0, 2) and model.fc2.bio_mod.context == (1, 2)


def test_class_conversion_and_decorator(rng):
    converter = BioConverter(weight_splitting_Gamma=2)
    BioMLP = converter(MLP)
    assert issubclass(BioMLP, MLP) and BioMLP.__name__ == "MLP"
    model = BioMLP(hidden=6)
    assert model.fc1.bio_mod.weight_splitting and not model.fc2.bio_mod.weight_splitting

    @converter
    class Small(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def forward(self, x):
            return self.fc(x)

    assert isinstance(Small().fc.bio_mod, BioModule)


def test_reconversion_replaces_config_without_double_hooks(rng):
    model = BioConverter(weight_splitting_Gamma=2)(MLP())
    model = BioConverter(BioConfig(weight_splitting_Gamma=4, dampening_factor=0.3))(model)
    assert model.fc1.bio_mod.config.dampening_factor == 0.3
    assert len(model.fc1._forward_hooks) == 1
    x = torch.randn(2, 5)
    h = model.fc1(x)
    assert torch.equal(h.view(2, 2, 4), h.view(2, 2, 4)[..., :1].expand(2, 2, 4))


def test_deepcopy_and_pickle_point_at_the_copy(rng):
    model = BioConverter(weight_splitting_Gamma=2)(MLP())
    for clone in (copy.deepcopy(model), _pickled(model)):
        assert clone.fc1.bio_mod.get_parent() is clone.fc1
        assert clone.crystallize.model is clone
        clone(torch.randn(4, 5)).sum().backward()
        clone.fuzzy_learning_rates()
        assert model.fc1.weight.grad is None


def _pickled(model: nn.Module) -> nn.Module:
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_state_dict_round_trip_carries_multipliers(rng):
    a = BioConverter(fuzzy_lr_distribution="normal", apply_dales_principle=True)(MLP())
    b = BioConverter(fuzzy_lr_distribution="normal", apply_dales_principle=True)(MLP())
    keys = set(a.state_dict())
    assert {"fc1.bio_mod.fuzzy_learning_rate_parameters", "fc1.bio_mod.dale_sign_weight"} <= keys
    b.load_state_dict(a.state_dict())
    p_a = a.fc1.bio_mod.fuzzy_learning_rate_parameters
    assert torch.equal(p_a, b.fc1.bio_mod.fuzzy_learning_rate_parameters)
    assert not any(p is p_a for p in a.parameters())


def test_torchscript_export_runs(rng):
    model = BioConverter()(MLP())
    scripted = torch.jit.script(model)
    x = torch.randn(3, 5)
    torch.testing.assert_close(scripted(x), model(x))


def test_wrong_types_raise(rng):
    converter = BioConverter()
    with pytest.raises(TypeError, match="Unsupported type for module_class_or_instance"):
        converter.convert(torch.zeros(3))
    with pytest.raises(TypeError, match="module_class must be a class; instead got"):
        converter._convert_class("invalid class")
    with pytest.raises(TypeError, match="BioModule cannot attach to ReLU"):
        BioModule(nn.ReLU())


def test_model_without_layers_gets_methods_that_do_nothing(rng):
    model = BioConverter()(nn.Sequential(nn.ReLU()))
    model.fuzzy_learning_rates()
    model.rejuvenate_weights()
