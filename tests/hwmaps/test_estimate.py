"""Routing and energy estimates: hand-computed cases."""

from __future__ import annotations

import pytest

from hwmaps import chips, estimate
from hwmaps.estimate import placement_link_loads
from hwmaps.ir import FactorBlock, Network, Placement, Tile
from hwmaps.route import hop_energy, hops, xy_route


def _two_core(core_b: int):
    v = FactorBlock("V", "0", "V", 2, 3, "in", "lat", (1.0, 2.0, 0.5))
    u = FactorBlock("U", "0", "U", 4, 2, "lat", "out", (0.25, 0.75))
    chip = chips.get("generic", cores=16)  # 4x4 mesh, Loihi costs
    tiles = (Tile("V", 0, 2, 0, 3), Tile("U", 0, 4, 0, 2))
    return Placement(Network((v, u)), chip, tiles, (0, core_b)), chip


def test_xy_route_goes_x_first():
    chip = chips.get("generic", cores=16)
    path = xy_route(chip, 0, 15)  # (0,0) -> (3,3)
    assert path[0] == ((0, 0), (0, 1)) and path[2] == ((0, 2), (0, 3))
    assert path[-1] == ((2, 3), (3, 3)) and len(path) == hops(chip, 0, 15) == 6


def test_hop_energy_by_direction_and_chip_crossing():
    chip = chips.get("generic", cores=16)
    assert hop_energy(chip, 0, 3) == pytest.approx(3 * 3e-12)  # E-W
    assert hop_energy(chip, 0, 12) == pytest.approx(3 * 4e-12)  # N-S
    board = chips.get("generic", cores=16, chips=2)  # two 4x4 chips side by side
    # core 3 is (0,3) on chip 0, core 16 is (0,4) on chip 1: one link crossing
    assert hops(board, 3, 16) == 1
    assert hop_energy(board, 3, 16) == pytest.approx(board.e_offchip_j)


def test_energy_hand_computed():
    p, chip = _two_core(5)  # core 5 = (1,1): 1 E-W + 1 N-S hop
    r = estimate(p)
    synops = (1 + 2 + 0.5) * 2 + (0.25 + 0.75) * 4
    assert r.extra["synops_per_step"] == pytest.approx(synops)
    assert r.breakdown["synops"] == pytest.approx(synops * chip.e_synop_j)
    # V's latent units emit 1.0 event/step in total and go to one core, 2 hops away
    assert r.breakdown["noc"] == pytest.approx(0.25 * 7e-12 + 0.75 * 7e-12)
    packets = 3.5 + 1.0  # inputs to core 0, latents to core 5
    assert r.hops["packets"] == pytest.approx(packets)
    assert r.breakdown["spikes"] == pytest.approx(packets * chip.e_spike_j)
    assert r.hops["max"] == 2 and r.hops["mean"] == pytest.approx(2 * 1.0 / packets)
    # latent units: 0.25 and 0.75 active; U outputs unknown -> counted active
    active = 0.25 + 0.75 + 4
    assert r.breakdown["neurons"] == pytest.approx(active * 81e-12 + (6 - active) * 52e-12)
    assert r.breakdown["static"] == pytest.approx(chip.static_w * 1e-3)
    assert r.total_j == pytest.approx(sum(r.breakdown.values()))
    work = max(3.5 * 2 * 3.5e-9 + 2 * 8.4e-9, 4 * 8.4e-9 + 4 * 3.5e-9)
    assert r.latency_s_per_step == pytest.approx(work + 4.1e-9 + 6.5e-9)
    assert r.core_utilisation[5]["neurons"] == pytest.approx(4 / 256)
    loads = placement_link_loads(p)
    assert loads == {((0, 0), (0, 1)): 1.0, ((0, 1), (1, 1)): 1.0}


def test_colocated_has_no_noc():
    p, _ = _two_core(0)
    r = estimate(p)
    assert r.breakdown["noc"] == 0 and r.hops["mean"] == 0 and r.cores_used == 1


def test_report_to_dict_is_json():
    import json

    p, _ = _two_core(5)
    d = estimate(p).to_dict()
    assert set(d["breakdown"]) == {"synops", "neurons", "spikes", "noc", "static"}
    json.dumps(d)


def test_estimate_rejects_non_placement():
    with pytest.raises(TypeError, match="Placement"):
        estimate("nope")
