"""``traffic`` (ours): hypergraph-aware clustering, energy-aware placement, atom refinement.

1. **Cluster** atoms (fine row tiles) in graph order. An atom joins the open cluster that
   already holds the most pins of its nets, weighted by the nets' measured events (one net per
   source unit: a multicast to several atoms of one core costs one packet). So V blocks settle
   next to the previous layer's outputs, and the U tiles they feed settle next to them.
2. **Place** clusters by a constructive QAP (heaviest first, cheapest free core) then annealing
   on the true per-packet energy (E-W and N-S hops priced apart, chip crossings priced as links).
3. **Refine**: move single atoms between cores when that lowers the hypergraph energy
   Σ_nets w · Σ_{distinct sink cores c} (hop energy(src, c) + spike energy), within capacity.

Steps 2-3 run on a small portfolio of clusterings — the affinity clustering of step 1, and
graph-order packing with and without a break at each new destination population — and the
mapping with the lowest hypergraph energy wins.
"""

from __future__ import annotations

import numpy as np

from hwmaps.chips.spec import ChipSpec
from hwmaps.hypergraph import Hypergraph, core_traffic
from hwmaps.ir import Network
from hwmaps.methods import register
from hwmaps.methods.common import atoms, check_fits, pack_into_clusters, place_clusters
from hwmaps.partition import Packer
from hwmaps.route import Geometry

ANNEAL_ITERS = 20000
REFINE_PASSES = 3


def incidence(hg: Hypergraph) -> list[list[int]]:
    """Nets touching each tile (as source or sink)."""
    inc: list[list[int]] = [[] for _ in range(hg.n_tiles)]
    for i in range(hg.n_nets):
        if hg.src[i] >= 0:
            inc[hg.src[i]].append(i)
        for t in hg.sinks(i).tolist():
            if t != hg.src[i]:
                inc[t].append(i)
    return inc


def net_cost(hg: Hypergraph, i: int, core_of: np.ndarray, geo: Geometry) -> float:
    """w · Σ_{distinct sink cores c} (hop energy(src core, c) + e_spike)."""
    sinks = np.unique(core_of[hg.sinks(i)])
    e = geo.chip.e_spike_j * len(sinks)
    if hg.src[i] >= 0:
        e += float(geo.energy(core_of[hg.src[i]], sinks).sum())
    return hg.weight[i] * e


def refine(hg: Hypergraph, core_of: np.ndarray, chip: ChipSpec, inc, rng, passes: int):
    """Greedy single-atom moves to cores of net neighbours that lower the energy."""
    geo = Geometry(chip)
    pk = Packer(chip, hg)
    for c in np.unique(core_of):
        pk.add(int(c), np.flatnonzero(core_of == c))
    core_of = pk.core_of  # shared with the packer
    for _ in range(passes):
        moved = 0
        for t in rng.permutation(hg.n_tiles).tolist():
            nets = inc[t]
            if not nets:
                continue
            home = int(core_of[t])
            cands = {int(c) for i in nets for c in core_of[hg.sinks(i)]}
            cands |= {int(core_of[hg.src[i]]) for i in nets if hg.src[i] >= 0}
            cands.discard(home)
            if not cands:
                continue
            before = sum(net_cost(hg, i, core_of, geo) for i in nets)
            best, best_c = 0.0, None
            for c in cands:
                if not pk.fits(c, [t]):
                    continue
                core_of[t] = c
                gain = before - sum(net_cost(hg, i, core_of, geo) for i in nets)
                core_of[t] = home
                if gain > best * (1 + 1e-9) + 1e-30:
                    best, best_c = gain, c
            if best_c is not None:
                pk.remove([t])
                pk.add(best_c, [t])
                moved += 1
        if not moved:
            break
    return core_of.copy()


@register("traffic")
def traffic(network: Network, chip: ChipSpec, rng: np.random.Generator, progress=False):
    """Hypergraph-aware clustering + energy-aware annealed placement + atom refinement."""
    tiles, hg = atoms(network, chip)
    check_fits(chip, hg, tiles)
    inc = incidence(hg)
    pins_of = {i: set(hg.sinks(i).tolist()) | ({int(hg.src[i])} if hg.src[i] >= 0 else set())
               for i in range(hg.n_nets)}  # fmt: skip

    def choose(t, pk, n_open):
        score: dict[int, float] = {}
        for i in inc[t]:
            for c in {int(pk.core_of[p]) for p in pins_of[i]} - {-1}:
                score[c] = score.get(c, 0.0) + hg.weight[i]
        ranked = sorted(score, key=lambda c: (-score[c], c))
        return ranked + ([n_open - 1] if n_open else [])

    dest = [network.block(t.block).dest for t in tiles]

    def in_order(t, pk, n_open):  # graph order, densely packed
        return [n_open - 1] if n_open else []

    def by_population(t, pk, n_open):  # graph order, a new population opens a new cluster
        same = n_open and t > 0 and dest[t] == dest[t - 1]
        return [int(pk.core_of[t - 1])] if same else []

    best = None
    for rule in (choose, in_order, by_population):
        cluster_of = pack_into_clusters(chip, hg, tiles, range(hg.n_tiles), rule)
        k = int(cluster_of.max()) + 1
        W = core_traffic(hg, cluster_of, k)[:k]
        np.fill_diagonal(W, 0)
        core_of = place_clusters(chip, hg, cluster_of, W + W.T, rng, energy=True, greedy=True,
                                 iters=ANNEAL_ITERS)  # fmt: skip
        core_of = refine(hg, core_of, chip, inc, rng, REFINE_PASSES)
        cost = energy(hg, core_of, chip)
        if best is None or cost < best[0]:
            best = (cost, core_of)
    return tiles, best[1]


def energy(hg: Hypergraph, core_of: np.ndarray, chip: ChipSpec) -> float:
    """NoC + spike-delivery energy per step of an assignment (the objective of this method)."""
    used, local = np.unique(core_of, return_inverse=True)
    W = core_traffic(hg, local, len(used))
    a, b = np.meshgrid(used, used, indexing="ij")
    return float((W[:-1] * Geometry(chip).energy(a, b)).sum() + W.sum() * chip.e_spike_j)
