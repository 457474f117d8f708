"""The gradient and weight rules: exact where deterministic, statistical where random."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from torch import nn

from braingate.bio import BioConfig, BioConverter, BioModule
from braingate.bio import functional as F


def _trained_grad(layer: nn.Module) -> None:
    layer.zero_grad()
    layer(torch.randn(8, layer.in_features)).pow(2).sum().backward()


def test_fuzzy_learning_rates_multiplies_gradient_exactly_by_p(rng):
    model = BioConverter(fuzzy_lr_distribution="lognormal")(
        nn.Sequential(nn.Linear(6, 5), nn.Linear(5, 3))
    )
    model(torch.randn(4, 6)).sum().backward()
    before = [layer.weight.grad.clone() for layer in model]
    bias_before = [layer.bias.grad.clone() for layer in model]
    model.fuzzy_learning_rates()
    for layer, g, b in zip(model, before, bias_before):
        assert torch.equal(layer.weight.grad, g * layer.bio_mod.fuzzy_learning_rate_parameters)
        assert torch.equal(layer.bias.grad, b)  # biases are not synapses


def test_crystallize_dampens_exactly_where_the_rule_holds(rng):
    layer = nn.Linear(4, 3)
    cfg = BioConfig(crystal_thresh=0.1, dampening_factor=0.5)
    bio = BioModule(layer, cfg)
    with torch.no_grad():
        layer.weight.copy_(
            torch.tensor([[1.0, -1.0, 1.0, 0.0], [0.5, 0.5, -0.5, 0.5], [1, 1, 1, 1]])
        )
    assert float(layer.weight.detach().abs().mean()) == 0.75
    layer.weight.grad = torch.tensor(
        [[0.05, -0.2, 0.09, 0.0], [0.8, 0.01, -0.2, 0.04], [0.74, 0.76, 0.1, 0.09]]
    )
    p0 = bio.fuzzy_learning_rate_parameters.clone()
    bio.crystallize()
    # |G|/|W| < 0.1 or |G| > mean|W| = 0.75, entry by entry (0/0 does not crystallize)
    expected = torch.tensor([[1, 0, 1, 0], [1, 1, 0, 1], [0, 1, 0, 1]], dtype=torch.bool)
    torch.testing.assert_close(
        bio.fuzzy_learning_rate_parameters, torch.where(expected, p0 * 0.5, p0)
    )
    assert torch.equal(layer.weight.grad, torch.tensor(
        [[0.05, -0.2, 0.09, 0.0], [0.8, 0.01, -0.2, 0.04], [0.74, 0.76, 0.1, 0.09]]))  # fmt: skip


def test_volume_dependent_lr_follows_folded_normal(rng):
    base_lr, stability, var = 0.1, 2.0, 0.2
    layer = nn.Linear(100, 100)
    bio = BioModule(
        layer, BioConfig(base_lr=base_lr, stability_factor=stability, lr_variability=var)
    )
    w_val = torch.where(torch.arange(100) < 50, 0.1, 3.0)
    with torch.no_grad():
        layer.weight.copy_(w_val.view(1, -1).expand(100, 100))
    layer.weight.grad = torch.ones(100, 100)
    bio.volume_dependent_lr()
    factors = layer.weight.grad
    for w in (0.1, 3.0):
        mu = base_lr * math.exp(-stability * w / (w + 1))
        sample = factors[:, w_val == w].flatten().numpy()
        dist = stats.foldnorm(c=1 / var, scale=var * mu)  # |N(μ, var·μ)|
        assert stats.kstest(sample, dist.cdf).pvalue > 1e-3
        assert sample.mean() == pytest.approx(mu, rel=0.02)
    assert (factors >= 0).all()


def test_rejuvenation_probability_and_sign_balance(rng):
    layer = nn.Linear(200, 200, bias=False)
    signs = torch.where(torch.rand(200, 200) < 0.7, 1.0, -1.0)
    mags = torch.where(torch.rand(200, 200) < 0.5, 0.05, 1.0)
    with torch.no_grad():
        layer.weight.copy_(signs * mags)
    w0 = layer.weight.detach().clone()
    dre = 1.0
    bio = BioModule(layer, BioConfig(rejuvenation_parameter_dre=dre))
    std = float(w0.std())
    n = bio.rejuvenate_weights()
    replaced = layer.weight != w0
    assert n == int(replaced.sum())
    for m in (0.05, 1.0):
        cell = mags == m
        p = math.exp(-dre * m / std)
        rate, k = float(replaced[cell].float().mean()), int(cell.sum())
        assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / k)
    fresh = layer.weight.detach()[replaced]
    assert float((fresh > 0).float().mean()) == pytest.approx(0.7, abs=0.03)  # original: 1.0
    assert float(fresh.abs().mean()) == pytest.approx(std * math.sqrt(2 / math.pi), rel=0.05)


def test_scale_grad_equalises_row_norms_keeping_directions(rng):
    layer = nn.Linear(10, 6)
    bio = BioModule(layer)
    _trained_grad(layer)
    g0 = layer.weight.grad.clone()
    bio.scale_grad()
    g = layer.weight.grad
    norms = g.norm(dim=1)
    torch.testing.assert_close(norms, torch.full((6,), float(g0.norm(dim=1).mean())))
    cos = torch.nn.functional.cosine_similarity(g, g0, dim=1)
    torch.testing.assert_close(cos, torch.ones(6))


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.floats(0.01, 10.0))
def test_homeostatic_scale_invariants(m, n, scale):
    g = torch.randn(m, n, dtype=torch.float64) * scale
    g[0] = 0.0
    out = F.homeostatic_scale(g, 0)
    assert torch.equal(out[0], torch.zeros(n, dtype=torch.float64))  # silent units stay silent
    nz = g.norm(dim=1) > 0
    norms = out[nz].norm(dim=1)
    torch.testing.assert_close(norms.sum(), g.norm(dim=1).sum())  # total plasticity kept
    torch.testing.assert_close(norms, norms.mean().expand_as(norms))  # shared equally
    cos = torch.nn.functional.cosine_similarity(out[nz], g[nz], dim=1)
    torch.testing.assert_close(cos, torch.ones_like(cos))


def test_missing_gradient_raises_before_any_layer_changes(rng):
    model = BioConverter()(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))
    model[0].weight.grad = torch.ones(4, 4)  # model[1] has none
    for method in ("fuzzy_learning_rates", "crystallize", "volume_dependent_lr", "scale_grad"):
        p = model[0].bio_mod.fuzzy_learning_rate_parameters.clone()
        with pytest.raises(
            ValueError,
            match=rf"{method}\(\) needs gradients but layer '1' has weight.grad = None; call loss.backward\(\)",
        ):
            getattr(model, method)()
        assert torch.equal(model[0].weight.grad, torch.ones(4, 4))
        assert torch.equal(model[0].bio_mod.fuzzy_learning_rate_parameters, p)
    with pytest.raises(ValueError, match=r"Linear.weight.grad is None"):
        model[1].bio_mod.crystallize()


def test_frozen_layers_are_skipped(rng):
    model = BioConverter()(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))
    model[0].requires_grad_(False)
    model(torch.randn(3, 4)).sum().backward()
    g = model[1].weight.grad.clone()
    model.fuzzy_learning_rates()
    assert torch.equal(model[1].weight.grad, g * model[1].bio_mod.fuzzy_learning_rate_parameters)
