"""Bio plasticity on braingate's EventLinear: the U and V factors are the synapses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from braingate.bio import BioConverter

event_linear = pytest.importorskip("braingate.nn.event_linear")
EventLinear = event_linear.EventLinear


def _model() -> nn.Sequential:
    return nn.Sequential(EventLinear(8, 6, 4, blocks=2), nn.ReLU(), EventLinear(6, 4, 2))


def test_multipliers_on_u_and_v(rng):
    model = BioConverter(fuzzy_lr_distribution="normal")(_model())
    bio = model[0].bio_mod
    assert bio.fuzzy_learning_rate_parameters.shape == model[0].U.shape
    assert bio.fuzzy_learning_rate_parameters_V.shape == model[0].V.shape
    model(torch.randn(5, 8)).pow(2).sum().backward()
    gu, gv, gs = model[0].U.grad.clone(), model[0].V.grad.clone(), model[0].s.grad.clone()
    model.fuzzy_learning_rates()
    assert torch.equal(model[0].U.grad, gu * bio.fuzzy_learning_rate_parameters)
    assert torch.equal(model[0].V.grad, gv * bio.fuzzy_learning_rate_parameters_V)
    assert torch.equal(model[0].s.grad, gs)


def test_weight_splitting_on_outputs(rng):
    model = BioConverter(weight_splitting_Gamma=2)(_model())
    h = model[0](torch.randn(3, 8))
    assert torch.equal(h.view(3, 3, 2), h.view(3, 3, 2)[..., :1].expand(3, 3, 2))
    assert not model[2].bio_mod.weight_splitting


def test_dale_on_factors_and_event_mode_after_rejuvenation(rng):
    model = BioConverter(apply_dales_principle=True)(_model())
    layer = model[0]
    sign_v, sign_u = layer.bio_mod.dale_sign_V, layer.bio_mod.dale_sign_U
    assert sign_v.shape == (8,) and sign_u.shape == (4,)  # inputs feed V, rank units feed U
    layer.execution = "event"
    x = torch.randn(2, 8)
    layer(x)
    layer.bio_mod.rejuvenate_weights()  # resets the event state: next step uses new factors
    with torch.no_grad():
        assert bool((layer.V * sign_v[:, None] >= 0).all())
        assert bool((layer.U * sign_u[None, :] >= 0).all())
        layer.execution = "dense"
        dense = layer(x)
    layer.execution = "event"
    torch.testing.assert_close(layer(x), dense, atol=1e-5, rtol=1e-5)
