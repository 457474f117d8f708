"""``metis_anneal``: a SNEAP-like baseline (REFERENCES.md §D).

1. Partition the tile graph with METIS (pymetis) into K parts minimising the weighted edge-cut,
   edges = (producer tile, reader tile) weighted by events per step — a plain graph, so a spike
   multicast to several tiles of one part is counted once per tile.
   K = ⌈load / (fill · core capacity)⌉; parts that overflow a core are repaired by moving tiles
   to the part they talk to most that has room (or a new part).
2. Place parts on cores by simulated annealing minimising Σ edge traffic × hops.
"""

from __future__ import annotations

import math

import numpy as np

from hwmaps.chips.spec import ChipSpec
from hwmaps.hypergraph import Hypergraph
from hwmaps.ir import Network
from hwmaps.methods import register
from hwmaps.methods.common import atoms, check_fits, pack_into_clusters, place_clusters

#: Target fill of a METIS part relative to a core (balance slack). A tuning choice.
FILL = 0.9
ANNEAL_ITERS = 20000


def tile_graph(hg: Hypergraph) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric tile graph: (u, v, weight) with u != v, both directions listed."""
    counts = np.diff(hg.ptr)
    src = np.repeat(hg.src, counts)
    w = np.repeat(hg.weight, counts)
    dst = hg.pins
    keep = (src >= 0) & (src != dst) & (w > 0)
    u = np.concatenate([src[keep], dst[keep]])
    v = np.concatenate([dst[keep], src[keep]])
    w = np.concatenate([w[keep], w[keep]])
    t = hg.n_tiles
    key, inv = np.unique(u * t + v, return_inverse=True)
    return key // t, key % t, np.bincount(inv, w)


def metis_parts(hg: Hypergraph, k: int, cap_n: float, cap_s: float, seed: int = 0) -> np.ndarray:
    """METIS k-way partition of the tile graph (vertex weight: fraction of a core)."""
    if k <= 1:
        return np.zeros(hg.n_tiles, dtype=np.int64)
    import pymetis  # optional dependency (extra "hw")

    u, v, w = tile_graph(hg)
    xadj = np.zeros(hg.n_tiles + 1, dtype=np.int64)
    xadj[1:] = np.cumsum(np.bincount(u, minlength=hg.n_tiles))
    scale = 1e8 / max(w.sum(), 1e-12)
    ew = np.maximum(1, np.round(w * scale)).astype(np.int64)
    frac = np.maximum(hg.neurons / cap_n, hg.synapses / cap_s)  # share of a core
    vw = np.maximum(1, np.round(10000 * frac)).astype(np.int64)
    adj = pymetis.CSRAdjacency(xadj.tolist(), v.tolist())
    opts = pymetis.Options(seed=seed)
    _, parts = pymetis.part_graph(k, adj, vweights=vw.tolist(), eweights=ew.tolist(), options=opts)
    return np.asarray(parts, dtype=np.int64)


@register("metis_anneal")
def metis_anneal(network: Network, chip: ChipSpec, rng: np.random.Generator, progress=False):
    """METIS edge-cut partition + annealed placement on hop count (SNEAP-like)."""
    tiles, hg = atoms(network, chip)
    check_fits(chip, hg, tiles)
    cap_n, cap_s = chip.capacities()
    need = max(hg.neurons.sum() / cap_n.min(), hg.synapses.sum() / cap_s.min())
    k = min(chip.cores, max(1, math.ceil(need / FILL)))
    parts = metis_parts(hg, k, float(cap_n.min()), float(cap_s.min()), int(rng.integers(2**31)))
    u, v, w = tile_graph(hg)
    nbr_w: dict[int, dict[int, float]] = {}
    for a, b, x in zip(u.tolist(), v.tolist(), w.tolist()):
        nbr_w.setdefault(a, {})[b] = x

    def choose(t, pk, n_open):
        # own METIS part first, then the parts it talks to most
        score: dict[int, float] = {}
        for b, x in nbr_w.get(t, {}).items():
            c = int(pk.core_of[b])
            if c >= 0:
                score[c] = score.get(c, 0.0) + x
        ranked = sorted(score, key=lambda c: -score[c])
        return [int(parts[t]), *ranked, *range(n_open)]

    order = np.argsort(parts, kind="stable")
    cluster_of = pack_into_clusters(chip, hg, tiles, order, choose, first_new=k)
    k2 = int(cluster_of.max()) + 1
    W = np.zeros((k2, k2))
    np.add.at(W, (cluster_of[u], cluster_of[v]), w / 2)  # u-v listed both ways
    np.fill_diagonal(W, 0)
    S = W + W.T
    core_of = place_clusters(chip, hg, cluster_of, S, rng, energy=False, greedy=False,
                             iters=ANNEAL_ITERS)  # fmt: skip
    return tiles, core_of
