"""Input-split tiling of V blocks: partial-sum (gather) nets, capacity, energy accounting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwmaps
from hwmaps import chips
from hwmaps.bound import noc_lower_bound
from hwmaps.hypergraph import build, core_traffic
from hwmaps.ir import FactorBlock, Network, Placement, Tile
from hwmaps.methods.common import ATOMS_PER_CORE, atoms, pack_into_clusters
from hwmaps.methods.split import input_split_cuts, split_order
from hwmaps.methods.traffic import energy
from hwmaps.partition import CapacityError, violations
from hwmaps.refine import LocalSearch, refine

from ._nets import mlp


def _split(net, chip):
    step = max(1, int(chip.capacities()[0].min()) // ATOMS_PER_CORE)
    return input_split_cuts(net, chip, step)


def _two_layers(ev_lat: float = 0.5) -> Network:
    """in -> 0.U (16 units) -> 1.V (4 rank units, reads the 16) -> 1.U."""
    blocks = (
        FactorBlock("0.V0", "0", "V", 4, 8, "in", "0.lat", (0.2,) * 8),
        FactorBlock("0.U", "0", "U", 16, 4, "0.lat", "0.out", (0.5,) * 4),
        FactorBlock("1.V0", "1", "V", 4, 16, "0.out", "1.lat", (0.4,) * 16),
        FactorBlock("1.U", "1", "U", 8, 4, "1.lat", "1.out", (ev_lat,) * 4),
    )
    return Network(blocks, "two")


def test_gather_nets_merge_pieces_sharing_a_core():
    net = _two_layers(ev_lat=0.5)
    chip = chips.get("generic", cores=16, neurons_per_core=64, synapses_per_core=4096)
    tiles = [Tile("0.V0", 0, 4, 0, 8), Tile("0.U", 0, 16, 0, 4), Tile("1.V0", 0, 4, 0, 6),
             Tile("1.V0", 0, 4, 6, 11), Tile("1.V0", 0, 4, 11, 16), Tile("1.U", 0, 8, 0, 4)]  # fmt: skip
    hg = build(net, tiles)
    assert hg.gather.sum() == 1 and hg.count[hg.gather].item() == 4  # one net, 4 rank units
    # rate: the rank units' events x sqrt(share of the row's input events held by pieces)
    rate = 4 * 0.5 * np.sqrt(10 / 16)
    assert hg.weight[hg.gather].item() == pytest.approx(rate)
    # both pieces on core 1, accumulator on core 0: one partial sum per unit, from 1 to 0
    W = core_traffic(hg, np.array([0, 0, 0, 1, 1, 0]), 2)
    assert W[1, 0] == pytest.approx(rate)  # not twice: the two pieces merge
    assert W[0, 1] == pytest.approx(0.4 * 10)  # their inputs 6..15 still travel once
    # pieces on the accumulator's core send nothing
    W = core_traffic(hg, np.array([0, 0, 0, 0, 1, 0]), 2)
    assert W[1, 0] == pytest.approx(rate)
    W = core_traffic(hg, np.zeros(6, dtype=np.int64), 1)
    assert W[0, 0] == pytest.approx(0.5 * 4 + 0.4 * 16 + 0.5 * 4)  # no partial sums
    assert W[1, 0] == pytest.approx(0.2 * 8)  # external inputs row
    p = Placement(net, chip, tuple(tiles), (0, 0, 0, 1, 2, 0))
    e = hwmaps.estimate(p)
    assert e.breakdown["noc"] + e.breakdown["spikes"] == pytest.approx(energy(hg, p.cores, chip))


def test_split_cuts_fit_and_follow_the_producer(rng):
    net = mlp([64, 512, 512, 10], 32, 4, rng)
    chip = chips.get("generic", cores=64)
    cuts = _split(net, chip)
    assert set(cuts) == {"1.V0", "1.V1", "1.V2", "1.V3", "2.V0", "2.V1", "2.V2", "2.V3"}
    for name, c in cuts.items():
        b = net.block(name)
        edges = [0, *c, b.cols]
        assert all(0 < x < b.cols for x in c) and np.all(np.diff(edges) > 0)
        assert max(np.diff(edges)) <= 256 - 32  # producer rows + 32 rank units per core
    tiles, hg = atoms(net, chip, cuts)
    assert sum(t.rows * t.cols for t in tiles) == net.synapses
    order = split_order(tiles, net, cuts)
    assert sorted(order) == list(range(len(tiles)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(8, 160), min_size=3, max_size=4),
    rank=st.integers(2, 16),
    blocks=st.integers(1, 3),
    neurons=st.integers(32, 128),
    synapses=st.integers(512, 4096),
    fan_in=st.one_of(st.none(), st.integers(48, 128)),
    seed=st.integers(0, 3),
)
def test_split_tiling_valid_and_accounted(sizes, rank, blocks, neurons, synapses, fan_in, seed):
    """On the input-split tiling: capacity never exceeded, every synapse once, the objective
    equals the estimate's NoC + spike energy, local-search deltas are exact."""
    rng = np.random.default_rng(seed)
    net = mlp(sizes, rank, min(blocks, rank), rng)
    chip = chips.get("generic", cores=256, neurons_per_core=neurons, synapses_per_core=synapses,
                     fan_in=fan_in)  # fmt: skip
    cuts = _split(net, chip)
    if not cuts:
        return
    try:
        tiles, hg = atoms(net, chip, cuts)
        order = split_order(tiles, net, cuts)
        packed = pack_into_clusters(chip, hg, tiles, order, lambda t, pk, k: [k - 1] if k else [])
    except (CapacityError, ValueError):
        return
    core_of = refine(hg, packed, chip, rng, passes=2, block_of=[t.block for t in tiles])
    cost = energy(hg, core_of, chip)
    assert cost <= energy(hg, packed, chip) * (1 + 1e-9) + 1e-18
    assert violations(hg, core_of, chip) == []
    p = Placement(net, chip, tuple(tiles), tuple(int(c) for c in core_of))  # checks coverage
    cap_n, cap_s = chip.capacities()
    for c, load in p.core_loads().items():
        assert load["neurons"] <= cap_n[c] and load["synapses"] <= cap_s[c]
    e = hwmaps.estimate(p)
    assert e.breakdown["noc"] + e.breakdown["spikes"] == pytest.approx(cost, rel=1e-9, abs=1e-18)
    ls = LocalSearch(hg, core_of, chip)
    for t in rng.choice(hg.n_tiles, size=min(6, hg.n_tiles), replace=False).tolist():
        c = int(rng.integers(len(ls.cores)))
        if c == ls.loc[t]:
            continue
        before = energy(hg, ls.core_of(), chip)
        d = ls.delta(t, c)
        ls.apply(t, c)
        assert energy(hg, ls.core_of(), chip) - before == pytest.approx(d, rel=1e-6, abs=1e-18)


def test_traffic_uses_the_split_when_it_pays(rng):
    # a full core of V synapses behind a full core of producer neurons: splitting pays
    net = mlp([64, 512, 512, 10], 32, 4, rng, rate=0.5)
    chip = chips.get("generic", cores=64)
    p = hwmaps.map_network(net, chip, "traffic")
    assert any(t.col0 > 0 and net.block(t.block).kind == "V" for t in p.tiles)
    seq = hwmaps.map_network(net, chip, "sequential")
    assert hwmaps.estimate(p).breakdown["noc"] < 0.5 * hwmaps.estimate(seq).breakdown["noc"]
    assert noc_lower_bound(net, chip) <= hwmaps.estimate(p).breakdown["noc"]


def test_partial_sum_protocol_counts_what_it_sends():
    """hwmaps.partial_sums: sigma-delta on partial sums with residual carry; the full-input
    group reproduces the latent events of the layer (send when |z - ẑ| > θ_z)."""
    from hwmaps.partial_sums import protocol_sends

    V = np.array([[1.0], [1.0]])
    # x̂ over 4 steps, batch 1: partial sums of input 0 alone: 0.3, 0.6, 0.6, 0.9
    xhat = np.array([[[0.3, 0.0]], [[0.6, 0.5]], [[0.6, 0.5]], [[0.9, 0.5]]])
    # input 0 alone, θ_z = 0.5: 0.3 (no), 0.6 (send, ŝ = 0.6), 0.6 (no), 0.9 (no: 0.3 <= 0.5)
    assert protocol_sends(V, xhat, [(0, np.array([0]))], 0.5).tolist() == [1.0]
    # both inputs: 0.3, 1.1 (send), 1.1, 1.4 (no) -> 1; θ_z = 0.2: 0.3, 1.1, 1.1, 1.4 -> 3
    both = (0, np.array([0, 1]))
    assert protocol_sends(V, xhat, [both], 0.5).tolist() == [1.0]
    assert protocol_sends(V, xhat, [both], 0.2).tolist() == [3.0]
    with pytest.raises(ValueError, match="must be"):
        protocol_sends(V, xhat[..., :1], [both], 0.2)
