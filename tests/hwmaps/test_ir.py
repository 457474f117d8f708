"""IR: validation, traffic, JSON round trips, corrupt input."""

from __future__ import annotations

import pytest

from hwmaps import chips, map_network
from hwmaps.ir import FactorBlock, Network, Placement, Tile

from ._nets import mlp


def test_network_round_trip(tmp_path, rng):
    net = mlp([12, 20, 5], 8, 2, rng)
    assert Network.from_dict(net.to_dict()) == net
    net.save(tmp_path / "n.json")
    assert Network.load(tmp_path / "n.json") == net


def test_placement_round_trip(tmp_path, rng):
    net = mlp([12, 20, 5], 8, 2, rng)
    p = map_network(net, chips.get("generic", cores=16, neurons_per_core=16), "traffic")
    p.save(tmp_path / "p.json")
    q = Placement.load(tmp_path / "p.json")
    assert q == p and q.core_loads() == p.core_loads()


def test_traffic_between_blocks():
    v = FactorBlock("V", "0", "V", 2, 3, "in", "lat", (1.0, 2.0, 0.5))
    u = FactorBlock("U", "0", "U", 4, 2, "lat", "out", (0.25, 0.75))
    net = Network((v, u))
    assert net.traffic() == {("input", "V"): 3.5, ("V", "U"): 1.0}
    assert net.synapses == 6 + 8 and net.neurons == 6
    assert net.populations() == {"in": 3, "lat": 2, "out": 4}


def test_block_validation():
    with pytest.raises(ValueError, match="kind='W'"):
        FactorBlock("a", "0", "W", 1, 1, "x", "y", (0.0,))
    with pytest.raises(ValueError, match="source_events has 1 entries, needs cols=2"):
        FactorBlock("a", "0", "V", 1, 2, "x", "y", (0.0,))
    with pytest.raises(ValueError, match="finite and >= 0"):
        FactorBlock("a", "0", "V", 1, 1, "x", "y", (-1.0,))


def test_network_validation():
    a = FactorBlock("a", "0", "V", 2, 1, "x", "y", (1.0,))
    with pytest.raises(ValueError, match="repeated"):
        Network((a, a))
    b = FactorBlock("b", "0", "V", 2, 1, "x", "y", (1.0,), dest_start=1)
    with pytest.raises(ValueError, match="held by more than one block"):
        Network((a, b))
    c = FactorBlock("c", "0", "V", 2, 1, "x", "z", (3.0,))
    with pytest.raises(ValueError, match="disagree"):
        Network((a, c))


def test_placement_must_cover_every_synapse_once(rng):
    net = mlp([4, 6], 2, 1, rng)
    chip = chips.get("generic", cores=4)
    tiles = (Tile("0.V0", 0, 2, 0, 4), Tile("0.U", 0, 6, 0, 2))
    Placement(net, chip, tiles, (0, 1))
    with pytest.raises(ValueError, match="exactly once"):
        Placement(net, chip, (*tiles[:1], Tile("0.U", 0, 5, 0, 2)), (0, 1))
    with pytest.raises(ValueError, match="core id 9"):
        Placement(net, chip, tiles, (0, 9))


def test_corrupt_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Network.load(bad)
    bad.write_text('{"blocks": [{"name": "a"}]}')
    with pytest.raises(ValueError, match="malformed Network"):
        Network.load(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        Placement.load(bad)
