"""Learning-rate multiplier distributions: a contract over all ten, plus each special rule."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from braingate.bio import BioConfig, BioConverter, BioModule, Distribution, SampleContext
from braingate.bio.distributions import draw_multipliers, get_sampler

NU = 0.16


def _layer(n: int = 200, m: int = 200) -> nn.Linear:
    return nn.Linear(n, m)


@pytest.mark.parametrize("dist", list(Distribution))
def test_contract_clamped_mean_one_not_trainable(dist, rng):
    cfg = BioConfig(fuzzy_lr_distribution=dist, fuzzy_lr_min=0.8, fuzzy_lr_max=1.25)
    layer = _layer()
    bio = BioModule(layer, cfg)
    p = bio.fuzzy_learning_rate_parameters
    assert p.shape == layer.weight.shape and not p.requires_grad
    assert all(p is not q for q in layer.parameters()) and not list(bio.parameters())
    assert "fuzzy_learning_rate_parameters" in bio.state_dict()
    assert float(p.min()) >= 0.8 and float(p.max()) <= 1.25
    assert abs(float(p.mean()) - 1.0) < 0.01  # 40,000 draws, std <= 0.16: mean error ~1e-3
    if dist is not Distribution.BASELINE:
        assert float(p.std()) > 0.02


@pytest.mark.parametrize(
    ("dist", "std"),
    [
        (Distribution.UNIFORM, NU / 3**0.5),
        (Distribution.NORMAL, NU),
        (Distribution.GAMMA, NU),
        (Distribution.LOGNORMAL, (torch.tensor(NU**2).exp() - 1).sqrt().item()),
        (Distribution.BETA, NU / (2 / NU + 1) ** 0.5),
    ],
)
def test_unclamped_moments(dist, std, rng):
    w = torch.zeros(400, 500)
    p = get_sampler(dist)(w, NU, SampleContext())
    assert abs(float(p.mean()) - 1.0) < 3e-3  # the original GAMMA had mean 2
    assert float(p.std()) == pytest.approx(std, rel=0.03)


def test_baseline_is_exactly_one():
    p = draw_multipliers(
        torch.randn(5, 7), BioConfig(fuzzy_lr_distribution="baseline"), SampleContext()
    )
    assert torch.equal(p, torch.ones(5, 7))


def test_layer_adaptive_spread_decreases_with_depth_under_converter(rng):
    widths = [64, 64, 64, 64, 64]
    layers = [nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
    model = BioConverter(fuzzy_lr_distribution=Distribution.LAYER_ADAPTIVE)(nn.Sequential(*layers))
    spreads = [float(layer.bio_mod.fuzzy_learning_rate_parameters.std()) for layer in model]
    assert all(a > b for a, b in itertools.pairwise(spreads))
    # UNIFORM half-width ν(1 − 0.5·l/L): std = half-width/√3
    for idx, s in enumerate(spreads):
        assert s == pytest.approx(NU * (1 - 0.5 * idx / 4) / 3**0.5, rel=0.06)


def test_weight_adaptive_small_weights_vary_more(rng):
    layer = nn.Linear(100, 100)
    with torch.no_grad():
        layer.weight.copy_(torch.where(torch.rand(100, 100) < 0.5, 0.01, 1.0))
    p = BioModule(
        layer, BioConfig(fuzzy_lr_distribution="weight_adaptive")
    ).fuzzy_learning_rate_parameters
    small, large = p[layer.weight < 0.5], p[layer.weight > 0.5]
    # mean|w| ≈ 0.5: small weights get ν·1.5, large ones ν·0.5 (half-widths)
    assert float((small - 1).abs().max()) == pytest.approx(1.5 * NU, rel=0.02)
    assert float((large - 1).abs().max()) == pytest.approx(0.5 * NU, rel=0.02)


def test_temporal_changes_every_update_freq_calls_and_keeps_spread(rng):
    cfg = BioConfig(fuzzy_lr_distribution="temporal", fuzzy_lr_dynamic=True,
                    fuzzy_lr_update_freq=3, fuzzy_lr_decay=0.9)  # fmt: skip
    bio = BioModule(_layer(), cfg)
    p = bio.fuzzy_learning_rate_parameters
    history = [p.clone()]
    for _ in range(9):
        bio.update_fuzzy_learning_rates()
        history.append(p.clone())
    changed = [not torch.equal(a, b) for a, b in itertools.pairwise(history)]
    assert changed == [False, False, True] * 3
    # AR(1) with decay d: corr(P_k+1 − 1, P_k − 1) = d; stationary std stays ν
    a, b = history[2] - 1, history[3] - 1
    corr = float((a * b).mean() / (a.std() * b.std()))
    assert corr == pytest.approx(0.9, abs=0.02)
    assert float(history[-1].std()) == pytest.approx(NU, rel=0.05)


def test_temporal_static_without_dynamic(rng):
    bio = BioModule(_layer(), BioConfig(fuzzy_lr_distribution="temporal", fuzzy_lr_update_freq=1))
    before = bio.fuzzy_learning_rate_parameters.clone()
    bio.update_fuzzy_learning_rates()
    assert torch.equal(before, bio.fuzzy_learning_rate_parameters)


def test_activity_active_units_become_less_variable(rng):
    cfg = BioConfig(fuzzy_lr_distribution="activity", fuzzy_lr_dynamic=True)
    model = BioConverter(cfg)(nn.Sequential(nn.Linear(20, 2)))
    layer = model[0]
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([1.0, -1.0]))  # unit 0 always active, unit 1 never
    base = layer.bio_mod.fuzzy_base.clone()
    x = torch.randn(32, 20)
    model.update_fuzzy_learning_rates(x)
    p = layer.bio_mod.fuzzy_learning_rate_parameters
    # rates a = (1, 0), mean 0.5: row 0 spread ×0.5, row 1 ×1.5
    torch.testing.assert_close(p[0] - 1, 0.5 * (base[0] - 1))
    torch.testing.assert_close(p[1] - 1, (1.5 * (base[1] - 1)).clamp(-0.5, 1.0))
    assert float(layer.bio_mod.activity_samples) == 32
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([-1.0, 1.0]))  # activity flips
    for _ in range(3):
        model(x)
    model.update_fuzzy_learning_rates()
    rate = layer.bio_mod.activity_count / layer.bio_mod.activity_samples
    torch.testing.assert_close(rate, torch.tensor([0.25, 0.75]))
    assert float((p[0] - 1).abs().mean()) > float((0.5 * (base[0] - 1)).abs().mean())
