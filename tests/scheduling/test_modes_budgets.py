"""Modes assigned at run time, budgets that cannot bind, and ranks the gate blocks realise."""

from __future__ import annotations

import warnings

import pytest
import torch

from braingate.nn.dynamic import DynamicLowRankLayer
from braingate.nn.loraven import MODE_PRESETS, LoRAven, mode_ranks, output_floor
from braingate.scheduling import BudgetManager, ComplexityRankScheduler, RankScheduler
from braingate.scheduling.masks import block_ends, realisable_ranks


def _x(b=16, n=64):
    torch.manual_seed(1)
    return torch.randn(b, n)


def _caught(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn()
    return out, [str(m.message) for m in w if issubclass(m.category, RuntimeWarning)]


# -- modes ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("attr", ["mode", "_current_mode"])
def test_assigning_a_mode_changes_ranks_and_budget_now(attr):
    layer = LoRAven(64, 48, mode="high_performance").eval()
    seen = {}
    for mode in ("high_performance", "balanced", "low_power", "high_performance"):
        setattr(layer, attr, mode)
        with torch.no_grad():
            layer(_x())
        lo, hi = mode_ranks(64, 48, mode)
        assert (layer.min_rank, layer.max_rank) == (lo, hi) and layer.mode == mode
        ranks = layer.get_rank_per_sample()
        assert ((ranks >= lo) & (ranks <= hi)).all()
        seen[mode] = (float(ranks.float().mean()), layer.energy_budget)
    hp, bal, lp = (seen[m] for m in ("high_performance", "balanced", "low_power"))
    assert hp[0] > bal[0] > lp[0] and hp[1] > bal[1] > lp[1]


def test_switching_above_capacity_warns_and_caps():
    layer = LoRAven(64, 48, mode="low_power", max_rank=10)
    assert layer.layer.capacity == 10
    _, msgs = _caught(lambda: setattr(layer, "mode", "high_performance"))
    assert any("capacity=10" in m and "using [10, 10]" in m for m in msgs), msgs
    assert layer.max_rank == 10
    with pytest.raises(ValueError, match="unknown mode 'turbo'"):
        layer.mode = "turbo"


def test_output_floor_is_tied_to_output_width():
    # a 10-class head keeps m - 1 = 9 ranks (8 in low_power); wide outputs keep the mode's K
    assert [output_floor(10, 10, m) for m in MODE_PRESETS] == [9, 9, 8]
    assert [output_floor(256, 128, m) for m in MODE_PRESETS] == [16, 12, 8]
    assert output_floor(4, 4, "balanced") == 3 and output_floor(1, 1, "low_power") == 1
    assert mode_ranks(128, 10, "low_power") == (8, 8)  # the seed alone gives [2, 4]
    assert mode_ranks(64, 128, "balanced") == (12, 32)  # the seed's own ranks when wider


def test_set_rank_range_checks_capacity_and_gate_unit():
    layer = DynamicLowRankLayer(64, 48, r_max=32, r_min=8, num_gate_blocks=4)
    assert layer.ends.tolist() == [8, 16, 24, 32] and layer.gate_unit == 8
    with pytest.raises(ValueError, match="exceeds this layer's capacity=32"):
        layer.set_rank_range(8, 40)
    _, msgs = _caught(lambda: layer.set_rank_range(5, 30))
    assert any("gate_unit=8" in m and "using ends [8, 16, 24]" in m for m in msgs), msgs
    assert (layer.r_min, layer.r_max) == (8, 24)
    assert (layer.scheduler.r_min, layer.scheduler.r_max) == (8, 24)  # its own scheduler follows


# -- budgets --------------------------------------------------------------------------------------
def test_budget_that_never_binds_warns_once_with_the_energy_range():
    layer = DynamicLowRankLayer(64, 48, r_max=32, r_min=4)
    _, msgs = _caught(lambda: [layer(_x(), budget=5.0) for _ in range(3)])
    never = [m for m in msgs if "never binds" in m]
    assert len(never) == 1
    table = layer.energy_table(16)
    assert "budget=5 mJ per sample never binds" in never[0]
    assert f"{float(table[0]):.3g} mJ per sample at rank 4" in never[0]
    assert f"{float(table[-1]):.3g} mJ at rank 32" in never[0] and "PerfEstimator" in never[0]


def test_budget_that_always_binds_warns_with_the_range():
    layer = DynamicLowRankLayer(64, 48, r_max=32, r_min=4)
    (_, ranks), msgs = _caught(lambda: layer(_x(), budget=1e-12))
    assert (ranks == 0).all()
    assert any("below the energy of r_min=4" in m and "mJ at rank 32" in m for m in msgs), msgs


def test_a_budget_in_range_is_quiet_and_caps():
    layer = DynamicLowRankLayer(64, 48, r_max=32, r_min=4)
    cap = float(layer.energy_table(16)[3])
    (_, ranks), msgs = _caught(lambda: layer(_x(), budget=cap))
    assert not [m for m in msgs if "binds" in m]
    assert (ranks <= int(layer.ends[3])).all()


@pytest.mark.parametrize("mode", list(MODE_PRESETS))
def test_loraven_default_budgets_are_quiet(mode):
    layer = LoRAven(64, 48, mode=mode)
    _, msgs = _caught(lambda: layer(_x()))
    assert not [m for m in msgs if "binds" in m], msgs
    assert layer.get_budget_usage() <= 1 + 1e-9


def test_loraven_user_budget_at_the_guides_scale_warns():
    layer = LoRAven(64, 48, mode="custom", max_rank=32, min_rank=8, energy_budget=500.0)
    _, msgs = _caught(lambda: layer(_x()))
    assert any("budget=500 mJ per sample never binds" in m for m in msgs), msgs


def test_budget_scheduler_target_out_of_range_warns_once():
    layer = DynamicLowRankLayer(64, 48, r_max=32, r_min=4)
    layer.scheduler = RankScheduler("budget", r_min=4, r_max=32, target_mJ=1000.0)
    _, msgs = _caught(lambda: [layer(_x()) for _ in range(3)])
    assert len([m for m in msgs if "never binds" in m]) == 1
    layer.scheduler = RankScheduler("budget", r_min=4, r_max=32, target_mJ=1e-12)
    _, msgs = _caught(lambda: layer(_x()))
    assert any("always binds" in m for m in msgs)


def test_budget_manager_at_the_guides_scale_warns_once():
    bm = BudgetManager(total_budget=1000.0)
    _, msgs = _caught(lambda: [bm.allocate_budget(k, 0.7, (512, 256)) for k in "abc"])
    assert len(msgs) == 1 and "can never bind" in msgs[0] and "512x256" in msgs[0]
    dense = bm.estimator.estimate_dense((512, 256))["energy_mJ_per_sample"]
    _, msgs = _caught(
        lambda: BudgetManager(total_budget=2 * dense).allocate_budget("a", 0.5, (512, 256))
    )
    assert msgs == []


# -- realisable ranks -----------------------------------------------------------------------------
def test_block_ends_start_at_the_floor():
    assert block_ends(64, 8, first=4).tolist() == [4, 12, 21, 29, 38, 46, 55, 64]
    assert block_ends(32, 1, first=32).tolist() == [32]
    assert block_ends(32, 4).tolist() == [8, 16, 24, 32]  # without a floor: equal blocks
    with pytest.raises(ValueError, match="blocks=5 cannot start at first=30"):
        block_ends(32, 5, first=30)
    ends = torch.tensor([4, 12, 21])
    got = realisable_ranks(torch.tensor([1, 4, 11, 12, 20, 30]), ends)
    assert got.tolist() == [4, 4, 4, 12, 12, 21]


def test_custom_scheduler_ranks_round_down_with_one_warning():
    class Asks(RankScheduler):
        def __init__(self, r):
            self.r_min, self.r_max, self.r = 1, 64, r

        def schedule_rank(self, complexity_scores, budget=None, **kw):
            return self.r

    layer = DynamicLowRankLayer(64, 48, r_max=32, r_min=4, num_gate_blocks=8)
    assert layer.ends.tolist() == [4, 8, 12, 16, 20, 24, 28, 32]
    for asked, used, why in [(12, 12, None), (13, 12, "largest block end not above it"),
                             (2, 4, "r_min=4, the layer's floor"), (40, 32, "r_max=32")]:  # fmt: skip
        layer.scheduler = Asks(asked)
        (_, ranks), msgs = _caught(lambda: [layer(_x()) for _ in range(2)][-1])
        assert (ranks == used).all()
        if why is None:
            assert msgs == []
        else:
            assert len(msgs) == 1 and f"asked for rank {asked}" in msgs[0]
            assert f"used rank {used}" in msgs[0] and why in msgs[0], msgs


def test_complexity_scheduler_picks_candidates():
    s = ComplexityRankScheduler(4, 64)
    cand = torch.tensor([4, 12, 21, 29, 38, 46, 55, 64])
    r = s.schedule_rank(torch.tensor([0.0, 0.1, 0.5, 1.0]), candidates=cand)
    assert r.tolist() == [4, 12, 38, 64]  # nearest candidates to 4, 10, 34, 64
    assert s.schedule_rank(torch.tensor([0.5])).tolist() == [34]  # no candidates: rounding


def test_mode_and_rank_range_round_trip_through_state_dict():
    src = LoRAven(64, 48, mode="high_performance", energy_budget=3e-5)
    src.mode = "low_power"
    dst = LoRAven(64, 48, mode="balanced")
    dst.load_state_dict(src.state_dict())
    assert dst.mode == "low_power" and dst.energy_budget == 3e-5
    assert (dst.min_rank, dst.max_rank) == (src.min_rank, src.max_rank)
    x = _x()
    src.eval(), dst.eval()
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))
    with pytest.raises(ValueError, match="lacks 'mode'"):
        dst.set_extra_state({})
