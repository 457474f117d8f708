"""Scheduler registry contract, energy-aware/budget behaviour, BudgetManager."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from braingate.scheduling import (
    BudgetManager,
    EnergyAwareRankScheduler,
    RankScheduler,
    scheduler_names,
)

CAND = torch.arange(8, 65, 8)
ENERGY = CAND.double() / 64.0  # mJ per sample, linear in rank


def _kw(name):
    return {"target_mJ": 0.5} if name == "budget" else {}


@pytest.mark.parametrize("name", scheduler_names())
def test_contract(name):
    s = RankScheduler(name, r_min=8, r_max=64, **_kw(name))
    assert isinstance(s, RankScheduler) and s.name == name
    c = torch.linspace(0, 1, 16)
    r = torch.as_tensor(s.schedule_rank(c, candidates=CAND, energy=ENERGY))
    assert r.shape == (16,) and r.dtype == torch.long
    assert ((r >= 8) & (r <= 64)).all()
    # a per-sample budget is never exceeded (when some candidate fits)
    r = torch.as_tensor(s.schedule_rank(c, budget=0.3, candidates=CAND, energy=ENERGY))
    if name != "fixed":
        assert (ENERGY[torch.searchsorted(CAND, r)] <= 0.3 + 1e-12).all()


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="known: budget, complexity, energy_aware, fixed"):
        RankScheduler("greedy", r_min=1, r_max=2)
    with pytest.raises(TypeError, match="by name"):
        RankScheduler()


@pytest.mark.parametrize("name", ["fixed", "complexity", "energy_aware"])
def test_rmin_above_rmax(name):
    with pytest.raises(ValueError, match="r_min=9 > r_max=4"):
        RankScheduler(name, r_min=9, r_max=4)


def test_negative_budget():
    s = EnergyAwareRankScheduler(r_min=8, r_max=64)
    with pytest.raises(ValueError, match="budget=-1"):
        s.schedule_rank(torch.rand(4), budget=-1.0, candidates=CAND, energy=ENERGY)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=2, max_size=20))
def test_energy_aware_is_monotone_in_complexity(scores):
    c = torch.tensor(scores)
    s = EnergyAwareRankScheduler(r_min=4, r_max=64, alpha=1.0, beta=0.1)
    r = s.schedule_rank(c)
    order = torch.argsort(c)
    assert (torch.diff(r[order]) >= 0).all()


def test_energy_aware_graded_with_spectrum():
    sv = 1.0 / torch.arange(1, 65).double().sqrt()
    r = EnergyAwareRankScheduler(4, 64, alpha=0.5).schedule_rank(torch.tensor([0.0, 0.5, 1.0]), candidates=CAND,
                                                      energy=ENERGY, singular_values=sv)  # fmt: skip
    assert r[0] < r[1] < r[2]


def test_user_subclass_without_super_init():
    class Mine(RankScheduler):
        def __init__(self, r_min=4, r_max=128, temperature=1.0):
            self.r_min, self.r_max, self.temperature = r_min, r_max, temperature

        def schedule_rank(self, complexity_scores, budget=None, **kw):
            return self.r_min

    s = Mine(r_min=8, r_max=256, temperature=2.0)
    assert s.schedule_rank(torch.rand(3)) == 8 and s.temperature == 2.0


def test_budget_scheduler_tracks_target(rng):
    s = RankScheduler("budget", r_min=8, r_max=64, target_mJ=0.4)
    spent = []
    for _ in range(60):
        c = torch.from_numpy(rng.beta(2, 2, 32)).float()
        r = s.schedule_rank(c, candidates=CAND, energy=ENERGY)
        spent.append(float(ENERGY[torch.searchsorted(CAND, r)].mean()))
    assert sum(spent) / len(spent) == pytest.approx(0.4, rel=0.02)
    assert len(set(r.tolist())) > 1  # per-sample, not one rank per batch


def test_budget_scheduler_needs_target():
    with pytest.raises(ValueError, match="target_mJ"):
        RankScheduler("budget", r_min=1, r_max=4)


def test_budget_manager_allocation_and_usage():
    bm = BudgetManager(total_budget=1000.0, window_size=10, safety_margin=0.1, adaptation_rate=0.01)
    with pytest.warns(RuntimeWarning, match="can never bind"):  # the guide's scale
        a = bm.allocate_budget("big", 0.5, (512, 256), performance_priority=1.0)
    assert a == pytest.approx(900.0)
    b = bm.allocate_budget("small", 0.5, (256, 128), performance_priority=1.0)
    assert bm.target_budget("big") + bm.target_budget("small") == pytest.approx(900.0)
    assert bm.target_budget("big") > b
    bm.record_usage("big", 500.0, n_samples=5)
    assert bm.layer_usage("big") == pytest.approx(500.0)
    assert bm.get_usage() == pytest.approx(0.5)
    # under-spending earns credit: the next allocation is larger
    again = bm.allocate_budget("big", 0.5, (512, 256))
    assert again > bm.target_budget("big")


@pytest.mark.parametrize(
    "kw,match",
    [({"total_budget": -1}, "total_budget"), ({"window_size": 0}, "window_size"),
     ({"safety_margin": 1.0}, "safety_margin"), ({"adaptation_rate": -0.1}, "adaptation_rate")],
)  # fmt: skip
def test_budget_manager_bad_args(kw, match):
    with pytest.raises(ValueError, match=match):
        BudgetManager(**kw)


def test_budget_manager_bad_calls():
    bm = BudgetManager(total_budget=10.0)
    with pytest.raises(ValueError, match="layer_dims"):
        bm.allocate_budget("a", 0.5, (512,))
    with pytest.raises(ValueError, match="complexity_score"):
        bm.allocate_budget("a", 1.5)
    with pytest.raises(ValueError, match="performance_priority"):
        bm.allocate_budget("a", 0.5, performance_priority=0)
