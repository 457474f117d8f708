"""The traffic method's seeds and polish, the local search, and the NoC lower bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hwmaps
from hwmaps import chips, map_network
from hwmaps.bound import noc_lower_bound
from hwmaps.hypergraph import build
from hwmaps.ir import FactorBlock, Network
from hwmaps.methods.common import atoms, parent_tiles
from hwmaps.methods.traffic import energy
from hwmaps.partition import CapacityError, make_tiles, violations
from hwmaps.refine import refine

from ._nets import mlp


def _objective(p) -> float:
    """The traffic method's objective (NoC + spike delivery, J per step) of a placement."""
    return energy(build(p.network, list(p.tiles)), np.asarray(p.cores), p.chip)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(st.integers(4, 200), min_size=2, max_size=4),
    rank=st.integers(2, 16),
    blocks=st.integers(1, 3),
    neurons=st.integers(16, 128),
    synapses=st.integers(256, 4096),
    fan_in=st.one_of(st.none(), st.integers(16, 64)),
    seed=st.integers(0, 3),
)
def test_traffic_never_worse_than_its_seeds(sizes, rank, blocks, neurons, synapses, fan_in, seed):
    """traffic(seed) <= sequential and <= metis_anneal(seed) on the objective; the lower bound
    is below every method's NoC energy."""
    rng = np.random.default_rng(seed)
    net = mlp(sizes, rank, min(blocks, rank), rng)
    chip = chips.get("generic", cores=256, neurons_per_core=neurons, synapses_per_core=synapses,
                     fan_in=fan_in)  # fmt: skip
    try:
        got = {m: map_network(net, chip, m, seed=seed) for m in ("sequential", "metis_anneal")}
    except CapacityError:
        return
    got["traffic"] = map_network(net, chip, "traffic", seed=seed)
    cost = {m: _objective(p) for m, p in got.items()}
    assert cost["traffic"] <= cost["sequential"] * (1 + 1e-9) + 1e-18
    assert cost["traffic"] <= cost["metis_anneal"] * (1 + 1e-9) + 1e-18
    lb = noc_lower_bound(net, chip)
    for p in got.values():
        assert lb <= hwmaps.estimate(p).breakdown["noc"] * (1 + 1e-9) + 1e-18


def test_atoms_nest_in_core_tiles(rng):
    net = mlp([600, 300, 40], 24, 3, rng)
    chip = chips.get("truenorth")
    fine, _ = atoms(net, chip)
    coarse = make_tiles(net, chip)
    par = parent_tiles(fine, coarse)
    for t, i in zip(fine, par.tolist()):
        c = coarse[i]
        assert (t.block, t.col0, t.col1) == (c.block, c.col0, c.col1)
        assert c.row0 <= t.row0 < t.row1 <= c.row1
    assert len(fine) > len(coarse)
    assert sum(t.rows * t.cols for t in fine) == net.synapses


def test_refine_never_worse_and_valid(rng):
    net = mlp([64, 256, 256, 10], 32, 4, rng)
    chip = chips.get("generic", cores=64)
    tiles, hg = atoms(net, chip)
    start = np.arange(hg.n_tiles) % 16  # a poor round-robin start, valid on these small atoms
    assert violations(hg, start, chip) == []
    out = refine(hg, start, chip, np.random.default_rng(0), block_of=[t.block for t in tiles])
    assert violations(hg, out, chip) == []
    assert energy(hg, out, chip) < energy(hg, start, chip)


def _chain(rows0: int, rows1: int, ev: float) -> Network:
    """in -(V)-> a (rows0 units) -(U)-> b (rows1 units): one sink set per layer."""
    v = FactorBlock("0.V0", "0", "V", rows0, 4, "in", "0.lat", (ev,) * 4)
    u = FactorBlock("0.U", "0", "U", rows1, rows0, "0.lat", "0.out", (ev,) * rows0)
    return Network((v, u), "chain")


def test_bound_exact_when_sink_set_fills_a_core():
    # 0.U (64 neurons) fills a 64-neuron core: every latent event crosses at least one hop.
    chip = chips.get("generic", cores=16, neurons_per_core=64, synapses_per_core=4096)
    net = _chain(8, 64, 0.5)
    lb = noc_lower_bound(net, chip)
    assert lb == pytest.approx(8 * 0.5 * min(chip.e_hop_ew_j, chip.e_hop_ns_j))
    p = map_network(net, chip, "traffic")
    assert hwmaps.estimate(p).breakdown["noc"] == pytest.approx(lb)  # attained: optimal


def test_bound_zero_when_everything_fits_one_core():
    chip = chips.get("generic", cores=16, neurons_per_core=256, synapses_per_core=4096)
    assert noc_lower_bound(_chain(8, 32, 0.5), chip) == 0.0
