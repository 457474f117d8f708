"""Mapping methods: contract over every method, hypothesis invariants, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwmaps
from hwmaps import chips, map_network
from hwmaps.feasibility import board_that_fits
from hwmaps.hypergraph import build
from hwmaps.partition import CapacityError, make_tiles, violations
from hwmaps.route import hops, xy_route

from ._nets import mlp

METHODS = hwmaps.methods.names()


def _check(p):
    """Capacity never exceeded; every synapse placed exactly once (Placement validates cover)."""
    cap_n, cap_s = p.chip.capacities()
    for core, load in p.core_loads().items():
        assert load["neurons"] <= cap_n[core]
        assert load["synapses"] <= cap_s[core]
        if p.chip.fan_in is not None:
            assert load["fan_in"] <= p.chip.fan_in
    assert sum(t.rows * t.cols for t in p.tiles) == p.network.synapses
    assert violations(build(p.network, p.tiles), np.asarray(p.cores), p.chip) == []


def test_methods_registry():
    assert METHODS == ["sequential", "first_fit", "metis_anneal", "traffic"]
    with pytest.raises(ValueError, match="known: sequential, first_fit"):
        map_network(mlp([4, 4], 2, 1, np.random.default_rng(0)), chips.get("loihi"), "magic")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chip", ["loihi", "truenorth", "spinnaker", "generic"])
def test_contract(method, chip, rng):
    net = mlp([64, 300, 96, 10], 32, 4, rng)
    spec = chips.get(chip, **({"cores": 64} if chip == "generic" else {}))
    p = map_network(net, spec, method, seed=1)
    _check(p)
    assert p.method == method and p.meta["map_time_s"] >= 0
    assert map_network(net, spec, method, seed=1).cores == p.cores  # deterministic per seed


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(2, 300), min_size=2, max_size=4),
    rank=st.integers(1, 24),
    blocks=st.integers(1, 3),
    neurons=st.integers(8, 128),
    synapses=st.integers(64, 4096),
    fan_in=st.one_of(st.none(), st.integers(4, 64)),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 3),
)
def test_invariants(sizes, rank, blocks, neurons, synapses, fan_in, method, seed):
    rng = np.random.default_rng(seed)
    blocks = min(blocks, rank)
    net = mlp(sizes, max(rank, blocks), blocks, rng)
    chip = chips.get("generic", cores=256, neurons_per_core=neurons, synapses_per_core=synapses,
                     fan_in=fan_in)  # fmt: skip
    try:
        p = map_network(net, chip, method, seed=seed)
    except CapacityError as err:
        assert "block" in str(err) or "tile" in str(err) or "network needs" in str(err)
        return
    _check(p)
    for a, b in zip(p.cores[:5], p.cores[-5:]):
        path = xy_route(chip, a, b)
        assert len(path) == hops(chip, a, b)
        for (_p0, p1), (q0, _) in itertools.pairwise(path):
            assert p1 == q0  # consecutive
        for u, v in path:
            assert abs(u[0] - v[0]) + abs(u[1] - v[1]) == 1  # one mesh step


def test_tiling_cuts_rows_and_columns(rng):
    net = mlp([600, 40], 8, 1, rng)
    chip = chips.get("truenorth")  # 256 axons, 256 neurons per core
    tiles = make_tiles(net, chip)
    v = [t for t in tiles if t.block == "0.V0"]
    assert len(v) == 3 and all(t.cols <= 256 for t in v)  # 600 inputs -> 3 column chunks
    p = map_network(net, chip, "traffic")
    _check(p)


def test_network_too_big_names_block(rng):
    net = mlp([64, 2000, 10], 32, 4, rng)
    chip = chips.get("generic", cores=4, neurons_per_core=64, synapses_per_core=1024)
    for method in METHODS:
        with pytest.raises(CapacityError, match="block|network needs") as err:
            map_network(net, chip, method)
        fit = board_that_fits(net, chip)  # the hint is computed, not a guess
        assert fit.chips > 1 and f"--chips {fit.chips}" in str(err.value)


def test_destination_limit(rng):
    net = mlp([16, 64, 64, 4], 16, 4, rng)
    chip = chips.get("generic", cores=64, neurons_per_core=16, max_dest_cores=1)
    with pytest.raises(CapacityError, match="max_dest_cores=1"):
        map_network(net, chip, "first_fit")


def test_speck_runs_out_of_cores(rng):
    net = mlp([16, 32, 32, 32, 32, 4], 16, 4, rng)  # 10 populations > 9 cores
    with pytest.raises(CapacityError, match="no free core on speck"):
        map_network(net, chips.get("speck"), "sequential")


def test_bad_arguments(rng):
    net = mlp([4, 4], 2, 1, rng)
    with pytest.raises(TypeError, match="ChipSpec"):
        map_network(net, "loihi")
    with pytest.raises(TypeError, match="Network"):
        map_network({}, chips.get("loihi"))


def test_multi_chip_board(rng):
    net = mlp([64, 512, 512, 512, 10], 64, 4, rng)
    small = dict(cores=16, neurons_per_core=64, synapses_per_core=4096)
    with pytest.raises(CapacityError):
        map_network(net, chips.get("generic", **small), "traffic")
    p = map_network(net, chips.get("generic", chips=4, **small), "traffic")
    _check(p)
    assert len({c // 16 for c in p.cores}) > 1


def test_traffic_beats_sequential_on_noc(rng):
    net = mlp([64, 256, 256, 10], 32, 4, rng)
    chip = chips.get("truenorth")
    e = {m: hwmaps.estimate(map_network(net, chip, m)).breakdown["noc"] for m in METHODS}
    assert e["traffic"] < e["sequential"]
    assert e["traffic"] < e["first_fit"]
