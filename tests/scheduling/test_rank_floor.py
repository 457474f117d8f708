"""DynamicLowRankLayer.rank_floor (what Trainer.calibrate_rank_floors sets) and force_rank."""

from __future__ import annotations

import pytest
import torch

from braingate.nn.dynamic import DynamicLowRankLayer
from braingate.scheduling import RankScheduler


def _layer(**kw):
    torch.manual_seed(0)
    layer = DynamicLowRankLayer(24, 20, r_max=16, r_min=2, num_gate_blocks=4, **kw).eval()
    # the cheapest rank for everyone, so any higher rank comes from the floor
    layer.scheduler = RankScheduler("fixed", r_min=2, r_max=16, rank=2)
    return layer


def test_floor_raises_every_planned_rank_to_a_block_end():
    layer = _layer()
    x = torch.randn(32, 24)
    with torch.no_grad():
        _, ranks = layer(x)
        assert (ranks == 2).all() and layer.rank_floor is None
        ends = layer.ends.tolist()
        layer.rank_floor = ends[1] + 1  # not a block end: rounded up, so the floor holds
        assert layer.rank_floor == ends[2]
        _, ranks = layer(x)
        assert (ranks == ends[2]).all()
        assert (layer.last_energy_mJ == layer.energy_table(32)[2]).all()


def test_a_budget_still_caps_ranks_below_the_floor():
    layer = _layer()
    layer.rank_floor = 16
    x = torch.randn(8, 24)
    table = layer.energy_table(8)
    with torch.no_grad():
        _, ranks = layer(x, budget=float(table[1]))
    assert (ranks == layer.ends[1]).all()


def test_force_rank_skips_the_scheduler():
    layer = _layer()

    class Boom(RankScheduler):
        r_min, r_max = 2, 16

        def schedule_rank(self, complexity_scores, budget=None, **kw):
            raise AssertionError("the scheduler ran")

    layer.scheduler = Boom()
    layer.rank_floor = 16  # ignored while a rank is forced
    layer.force_rank = int(layer.ends[1])
    with torch.no_grad():
        _, ranks = layer(torch.randn(4, 24))
    assert (ranks == layer.ends[1]).all()


def test_floor_is_kept_in_the_state_dict_and_follows_a_new_range():
    layer = _layer()
    layer.rank_floor = int(layer.ends[2])
    other = _layer()
    other.load_state_dict(layer.state_dict())
    assert other.rank_floor == layer.rank_floor
    other.set_rank_range(2, 8)
    assert other.rank_floor == 8  # clamped to the new r_max (a block end)
    other.rank_floor = None
    assert other.rank_floor is None


@pytest.mark.parametrize("bad", [0, 17, 2.5, True, "4"])
def test_bad_floor_is_refused_and_leaves_the_layer_alone(bad):
    layer = _layer()
    layer.rank_floor = 16
    with pytest.raises(
        ValueError, match=rf"rank_floor={bad!r} must be None or an int in \[1, r_max=16\]"
    ):
        layer.rank_floor = bad
    assert layer.rank_floor == 16
