"""DynamicLowRankLayer and LoRAven: per-sample ranks, gradient to the scorer, budget, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from braingate.nn.dynamic import DynamicLowRankLayer
from braingate.nn.loraven import MODE_PRESETS, LoRAven, mode_ranks
from braingate.scheduling import MagnitudeScorer, RankScheduler


def _x(rng, b=32, n=48):
    scale = torch.linspace(0.05, 3.0, b)[:, None]
    return torch.from_numpy(rng.normal(size=(b, n))).float() * scale


def test_per_sample_ranks_differ_and_follow_complexity(rng):
    layer = DynamicLowRankLayer(
        48, 32, r_max=32, r_min=4, num_gate_blocks=8, scorer=MagnitudeScorer()
    )
    y, ranks = layer(_x(rng))
    assert y.shape == (32, 32) and ranks.shape == (32,) and ranks.dtype == torch.long
    assert len(set(ranks.tolist())) >= 3
    corr = np.corrcoef(layer.last_scores.numpy(), ranks.float().numpy())[0, 1]
    assert corr > 0.9


def test_learned_scorer_gets_gradient(rng):
    layer = DynamicLowRankLayer(48, 32, r_max=32, r_min=4, scorer_hidden=8)
    y, _ = layer(_x(rng))
    (y.pow(2).mean() + layer.last_soft_rank.mean()).backward()
    grads = [p.grad for p in layer.scorer.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_output_equals_masked_dense_weight(rng):
    layer = DynamicLowRankLayer(
        20, 12, r_max=8, r_min=2, num_gate_blocks=4, scorer=MagnitudeScorer()
    )
    x = _x(rng, 6, 20)
    with torch.no_grad():
        y, ranks = layer(x)
        b = layer.base
        for i in range(6):
            r = int(ranks[i])
            w = (b.U[:, :r] * b.s[:r]) @ b.V[:, :r].T
            torch.testing.assert_close(y[i], x[i] @ w.T + b.bias, rtol=1e-4, atol=1e-5)


def test_budget_is_a_hard_cap(rng):
    layer = DynamicLowRankLayer(48, 32, r_max=32, r_min=4, scorer=MagnitudeScorer())
    table = layer.energy_table(32)
    _, ranks = layer(_x(rng), budget=float(table[3]))
    assert (ranks <= int(layer.ends[3])).all()
    with pytest.warns(RuntimeWarning, match="below the energy of r_min"):
        _, ranks = layer(_x(rng), budget=0.0)
    assert (ranks == 0).all()
    with pytest.raises(ValueError, match="budget=-1"):
        layer(_x(rng), budget=-1.0)


def test_custom_scheduler_plugs_in(rng):
    class Constant(RankScheduler):
        def __init__(self, r):
            self.r_min, self.r_max, self.r = 1, 32, r

        def schedule_rank(self, complexity_scores, budget=None, **kw):
            return self.r

    layer = DynamicLowRankLayer(48, 32, r_max=32, r_min=4, scheduler=Constant(12))
    _, ranks = layer(_x(rng, 5))
    assert (ranks == 12).all()  # 8 blocks of 4: 12 is a block end
    layer.scheduler = "energy_aware"
    _, ranks = layer(_x(rng, 5))
    assert ((ranks >= 4) & (ranks <= 32)).all()


def test_event_mode_matches_dense(rng):
    layer = DynamicLowRankLayer(
        24, 16, r_max=12, r_min=2, num_gate_blocks=5, scorer=MagnitudeScorer()
    )
    x = _x(rng, 4, 24)
    with torch.no_grad():
        y_dense, r1 = layer(x)
        layer.execution = "event"
        layer.scorer.running_mean.zero_(), layer.scorer.seen.zero_()
        y_event, r2 = layer(x)
    assert torch.equal(r1, r2)
    torch.testing.assert_close(y_event, y_dense, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kw,match",
    [({"r_min": 9, "r_max": 4}, "r_min=9 > r_max=4"), ({"r_max": 100}, "exceeds"),
     ({"r_max": 8, "num_gate_blocks": 9}, "num_gate_blocks"), ({"scheduler": "nope"}, "known")],
)  # fmt: skip
def test_layer_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        DynamicLowRankLayer(48, 32, **kw)


@pytest.mark.parametrize("mode", list(MODE_PRESETS))
def test_loraven_presets(mode):
    p = MODE_PRESETS[mode]
    layer = LoRAven(128, 64, mode=mode)
    assert layer.max_rank == max(4, int(64 * p.max_rank_ratio))
    # the seed's floor, raised to the output-width floor min(m - 1, K)
    assert layer.min_rank == max(2, int(64 * p.min_rank_ratio), min(63, p.floor_width))
    assert (layer.min_rank, layer.max_rank) == mode_ranks(128, 64, mode)
    assert layer.layer.capacity == 64  # trains at full rank, runs at the mode's ranks
    y = layer(torch.randn(8, 128))
    stats = layer.get_performance_stats()
    assert y.shape == (8, 64)
    assert {
        "current_rank",
        "energy_consumption",
        "budget_usage",
        "compression_ratio",
        "latency_ms",
    } <= set(stats)
    assert 0 < stats["budget_usage"] <= 1.0 + 1e-9
    assert stats["energy_consumption"] > 0 and stats["latency_ms"] > 0


def test_low_power_budget_binds():
    layer = LoRAven(96, 96, mode="low_power")
    layer(torch.randn(16, 96) * 5)
    assert layer.get_budget_usage() <= 1.0 and layer.get_current_rank() < layer.max_rank


def test_loraven_nan_warns_once_and_is_zero():
    layer = LoRAven(3, 4)
    x = torch.tensor([[float("nan"), 1.0, float("inf")]])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        y1 = layer(x)
        y2 = layer(x)
    assert len([m for m in w if "NaN" in str(m.message)]) == 1
    assert torch.isfinite(y1).all()
    torch.testing.assert_close(y1, layer(torch.tensor([[0.0, 1.0, 0.0]])))
    assert torch.equal(y1, y2)


@pytest.mark.parametrize(
    "kw,match",
    [({"mode": "turbo"}, "known: high_performance"), ({"energy_budget": -1.0}, "energy_budget"),
     ({"mode": "custom", "max_rank": 8, "min_rank": 16}, "r_min=16 > r_max=8")],
)  # fmt: skip
def test_loraven_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        LoRAven(64, 32, **kw)
