"""``traffic`` (ours): hypergraph-aware clustering, energy-aware placement, atom refinement.

1. **Cluster** atoms (fine row tiles) in graph order. An atom joins the open cluster that
   already holds the most pins of its nets, weighted by the nets' measured events (one net per
   source unit: a multicast to several atoms of one core costs one packet). So V blocks settle
   next to the previous layer's outputs, and the U tiles they feed settle next to them.
2. **Place** clusters by a constructive QAP (heaviest first, cheapest free core) then annealing
   on the true per-packet energy (E-W and N-S hops priced apart, chip crossings priced as links).
3. **Refine**: move single atoms between cores when that lowers the hypergraph energy
   Σ_nets w · Σ_{distinct sink cores c} (hop energy(src, c) + spike energy), within capacity.

Step 2 runs on a small portfolio of clusterings — the affinity clustering of step 1, and
graph-order packing with and without a break at each new destination population; the placement
with the lowest hypergraph energy is refined (step 3).
"""

from __future__ import annotations

from collections import Counter

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


def refine(hg: Hypergraph, core_of: np.ndarray, chip: ChipSpec, inc, rng, passes: int):
    """Greedy single-atom moves to cores of net neighbours that lower the energy.

    Each net keeps a count of its sink atoms per core, so a move is priced incrementally:
    a sink core that empties saves ``w·(E[src, core] + e_spike)``, a new one costs as much;
    a moved source re-prices its distinct sink cores.
    """
    used, loc = np.unique(core_of, return_inverse=True)
    a, b = np.meshgrid(used, used, indexing="ij")
    E = Geometry(chip).energy(a, b).tolist()
    spike = chip.e_spike_j
    src, w = hg.src.tolist(), hg.weight.tolist()
    loc = loc.tolist()
    cnt = [Counter(loc[p] for p in hg.sinks(i).tolist()) for i in range(hg.n_nets)]
    pk = Packer(chip, hg)
    for c in range(len(used)):
        pk.add(int(used[c]), np.flatnonzero(np.asarray(loc) == c))

    def delta(t: int, h: int, c: int) -> float:
        d = 0.0
        for i in inc[t]:
            wi = w[i]
            if wi == 0.0:
                continue
            if src[i] == t:
                row_c, row_h = E[c], E[h]
                d += wi * sum(row_c[x] - row_h[x] for x in cnt[i])
                continue
            s = loc[src[i]] if src[i] >= 0 else -1
            n = cnt[i]
            if n[h] == 1:
                d -= wi * ((E[s][h] if s >= 0 else 0.0) + spike)
            if n.get(c, 0) == 0:
                d += wi * ((E[s][c] if s >= 0 else 0.0) + spike)
        return d

    for _ in range(passes):
        moved = 0
        for t in rng.permutation(hg.n_tiles).tolist():
            h = loc[t]
            cands = set()
            for i in inc[t]:
                cands.update(cnt[i])
                if src[i] >= 0:
                    cands.add(loc[src[i]])
            cands.discard(h)
            best, best_c = -1e-30, None
            for c in cands:
                d = delta(t, h, c)
                if d < best and pk.fits(int(used[c]), [t]):
                    best, best_c = d, c
            if best_c is None:
                continue
            for i in inc[t]:
                if src[i] != t:
                    cnt[i][h] -= 1
                    if not cnt[i][h]:
                        del cnt[i][h]
                    cnt[i][best_c] += 1
            loc[t] = best_c
            pk.remove([t])
            pk.add(int(used[best_c]), [t])
            moved += 1
        if not moved:
            break
    return used[np.asarray(loc)]


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
        cost = energy(hg, core_of, chip)
        if best is None or cost < best[0]:
            best = (cost, core_of)
    return tiles, refine(hg, best[1], chip, inc, rng, REFINE_PASSES)


def energy(hg: Hypergraph, core_of: np.ndarray, chip: ChipSpec) -> float:
    """NoC + spike-delivery energy per step of an assignment (the objective of this method)."""
    used, local = np.unique(core_of, return_inverse=True)
    W = core_traffic(hg, local, len(used))
    a, b = np.meshgrid(used, used, indexing="ij")
    return float((W[:-1] * Geometry(chip).energy(a, b)).sum() + W.sum() * chip.e_spike_j)
