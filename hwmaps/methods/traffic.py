"""``traffic`` (ours): the best of several seed placements, each polished on the true objective.

Objective (J per step): Σ_nets w · Σ_{distinct sink cores c} (hop energy(src, c) + spike
energy) — one net per source unit, so a multicast to several atoms of one core costs one packet;
E-W and N-S hops priced apart, cores behind one router 0 hops apart, chip crossings as links.

Seeds (all on the same atoms: fine row pieces nested in core-sized tiles):

1. **affinity clustering**: atoms in graph order join the open cluster holding the most pins of
   their nets (weighted by events), so V blocks settle next to the previous layer's outputs
   and the U tiles they feed next to them; graph-order packing with and without a break at each
   destination population. Clusters are placed by a constructive QAP then annealing on energy.
2. **the baselines' own placements**: ``sequential`` (core-sized tiles on consecutive cores)
   and ``metis_anneal`` (run first on the method's random stream, so with the same seed it is
   the very placement the ``metis_anneal`` method returns).

**Tilings.** Every seed above is built on the plain tiling and, when some V block reads units
produced by another block, also on the input-split tiling (:mod:`hwmaps.methods.split`: V blocks
cut by inputs so each piece can sit beside its inputs' producer, partial sums of the rank units
sent to the accumulating piece). All seeds of both tilings compete on the same objective (the
energy of their own hypergraph) and the cheapest are polished; the split is kept only when
it is cheaper.

**Polish** each seed: alternate atom refinement (:func:`hwmaps.refine.refine`: moves, swaps,
block-group moves that lower the objective within capacity) and re-annealing the core positions
of the resulting clusters from where they are. Both steps only accept improvements, so the
result is never worse than any seed: ``traffic`` ≤ ``sequential`` and ≤ ``metis_anneal`` on the
objective, for every network and chip.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from hwmaps.chips.spec import ChipSpec
from hwmaps.hypergraph import Hypergraph, build, core_traffic
from hwmaps.ir import Network
from hwmaps.methods import register
from hwmaps.methods.common import (
    ATOMS_PER_CORE,
    atoms,
    check_fits,
    pack_into_clusters,
    parent_tiles,
    place_clusters,
)
from hwmaps.methods.metis_anneal import metis_anneal
from hwmaps.methods.split import input_split_cuts, split_order
from hwmaps.partition import CapacityError, make_tiles
from hwmaps.partition import sequential as sequential_cores
from hwmaps.place import anneal, candidate_cores, cost_matrix
from hwmaps.refine import incidence, refine
from hwmaps.route import Geometry

#: Annealing moves when placing an affinity seed (polish re-anneals the best). A tuning choice.
SEED_ITERS = 5000
#: Annealing moves when re-placing the clusters of a polished seed (it starts from a good
#: placement). A tuning choice.
REPLACE_ITERS = 4000
REFINE_PASSES = 4
#: Refine / re-place rounds per seed (stops early when a round gains nothing).
POLISH_ROUNDS = 3
#: Seeds polished (the cheapest ones before polishing): at least POLISH_SEEDS, more while
#: seeds x hypergraph pins stays within POLISH_PIN_BUDGET (all seeds of small networks).
#: Unpolished seeds still compete as they are. Tuning choices (a work budget, deterministic).
POLISH_SEEDS = 2
POLISH_PIN_BUDGET = 10000


@register("traffic")
def traffic(network: Network, chip: ChipSpec, rng: np.random.Generator, progress=False):
    """Best of the seeds (affinity clusterings, sequential, metis_anneal), each polished, on the
    plain tiling and on the input-split tiling (:mod:`hwmaps.methods.split`)."""
    tiles, hg = atoms(network, chip)
    check_fits(chip, hg, tiles)
    seeds: list[np.ndarray] = []
    try:  # first, so that it draws the same random numbers as the metis_anneal method
        m_tiles, m_core = metis_anneal(network, chip, rng)
        if m_tiles == tiles:
            seeds.append(np.asarray(m_core))
    except (CapacityError, ImportError):  # no room for METIS's packing; pymetis missing
        pass
    coarse = make_tiles(network, chip)
    try:
        seq = sequential_cores(coarse, build(network, coarse), network, chip)
        seeds.append(np.asarray(seq)[parent_tiles(tiles, coarse)])
    except CapacityError:
        pass
    variants = [(tiles, hg, seeds, list(range(hg.n_tiles)))]
    step = max(1, int(chip.capacities()[0].min()) // ATOMS_PER_CORE)
    cuts = input_split_cuts(network, chip, step)
    if cuts:
        s_tiles, s_hg = atoms(network, chip, cuts)
        try:
            check_fits(chip, s_hg, s_tiles)
            variants.append((s_tiles, s_hg, [], split_order(s_tiles, network, cuts)))
        except CapacityError:  # the extra partial-sum neurons do not fit the board
            pass
    _, best_v, best_core = search(network, chip, rng, variants)
    return variants[best_v][0], best_core


def search(network, chip, rng, variants):
    """Rank all seeds of all tilings (given seeds + affinity seeds of the tiles packed in their
    order), polish the cheapest; returns (objective, tiling index, core id per tile) of the best.

    Args:
        variants: [(tiles, hypergraph, seeds, packing order)], one per tiling.
    """
    ranked, pins = [], 1
    for v, (tiles, hg, seeds, order) in enumerate(variants):
        inc = incidence(hg)
        for c in list(seeds) + affinity_seeds(network, chip, tiles, hg, inc, rng, order):
            ranked.append((energy(hg, c, chip), v, len(ranked), c, inc))
        pins = max(pins, len(hg.pins))
    ranked.sort(key=lambda x: x[:3])
    best = (*ranked[0][:2], ranked[0][3])
    n_polish = max(POLISH_SEEDS, POLISH_PIN_BUDGET // pins)
    for _, v, _, c, inc in ranked[:n_polish]:
        tiles, hg = variants[v][:2]
        core_of, cost = polish(hg, c, chip, rng, inc, [t.block for t in tiles])
        if cost < best[0]:
            best = (cost, v, core_of)
    return best


def affinity_seeds(network, chip, tiles, hg: Hypergraph, inc, rng, order) -> list[np.ndarray]:
    """Seeds of step 1: three clusterings of the tiles taken in ``order``, each placed by
    constructive QAP + annealing."""
    pins_of = {i: set(hg.sinks(i).tolist()) | ({int(hg.src[i])} if hg.src[i] >= 0 else set())
               for i in range(hg.n_nets)}  # fmt: skip
    prev = {t: p for p, t in pairwise(order)}  # the tile packed just before

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
        p = prev.get(t)
        same = n_open and p is not None and dest[t] == dest[p]
        return [int(pk.core_of[p])] if same else []

    out = []
    for rule in (choose, in_order, by_population):
        cluster_of = pack_into_clusters(chip, hg, tiles, order, rule)
        k = int(cluster_of.max()) + 1
        W = core_traffic(hg, cluster_of, k)[:k]
        np.fill_diagonal(W, 0)
        out.append(place_clusters(chip, hg, cluster_of, W + W.T, rng, energy=True, greedy=True,
                                  iters=SEED_ITERS))  # fmt: skip
    return out


def polish(hg: Hypergraph, core_of, chip: ChipSpec, rng, inc, block_of):
    """Alternate atom refinement and cluster re-placement while they gain; never worse.

    Returns:
        (core id per tile, objective in J per step).
    """
    core_of = np.asarray(core_of)
    cost = energy(hg, core_of, chip)
    for _ in range(POLISH_ROUNDS):
        cand = refine(hg, core_of, chip, rng, REFINE_PASSES, block_of, inc)
        cand = replace(hg, cand, chip, rng)
        new = energy(hg, cand, chip)
        if not new < cost * (1 - 1e-9):
            break
        core_of, cost = cand, new
    return core_of, cost


def replace(hg: Hypergraph, core_of: np.ndarray, chip: ChipSpec, rng) -> np.ndarray:
    """Re-anneal the core positions of the clusters of ``core_of``, starting where they are
    (the annealer returns the best assignment seen, so this is never worse)."""
    used, local = np.unique(core_of, return_inverse=True)
    k = len(used)
    if k < 2:
        return core_of
    W = core_traffic(hg, local, k)[:k]
    np.fill_diagonal(W, 0)
    region = np.union1d(used, candidate_cores(chip, k))
    D = cost_matrix(chip, region, energy=True)
    fits = None
    if chip.core_neurons is not None or chip.core_synapses is not None:
        cap_n, cap_s = chip.capacities()
        load_n, load_s = np.bincount(local, hg.neurons, k), np.bincount(local, hg.synapses, k)

        def fits(c: int, p: int) -> bool:
            return load_n[c] <= cap_n[region[p]] and load_s[c] <= cap_s[region[p]]

    pos = anneal(W + W.T, D, np.searchsorted(region, used), rng,
                 iters=min(REPLACE_ITERS, 100 * k), fits=fits)  # fmt: skip
    return region[pos][local]


def energy(hg: Hypergraph, core_of: np.ndarray, chip: ChipSpec) -> float:
    """NoC + spike-delivery energy per step of an assignment (the objective of this method)."""
    used, local = np.unique(core_of, return_inverse=True)
    W = core_traffic(hg, local, len(used))
    a, b = np.meshgrid(used, used, indexing="ij")
    return float((W[:-1] * Geometry(chip).energy(a, b)).sum() + W.sum() * chip.e_spike_j)
