"""Clusters of tiles -> core positions: a quadratic assignment over the mesh.

Cost of an assignment ``p`` of K clusters to cores:

.. math:: C(p) = \\tfrac12 \\sum_{i,j} S_{ij}\\, D_{p_i p_j},\\qquad S = W + W^\\top

with W the cluster-to-cluster traffic (events per step) and D a per-packet cost between cores
(hops, or energy with direction-dependent hop costs). Moves are swaps or moves to a free core,
evaluated in O(K) each, accepted by simulated annealing (Metropolis, geometric cooling).
"""

from __future__ import annotations

import numpy as np

from hwmaps.chips.spec import ChipSpec
from hwmaps.route import Geometry


def candidate_cores(chip: ChipSpec, k: int, slack: float = 0.5) -> np.ndarray:
    """A compact set of about ``k·(1+slack)`` cores: a square-ish region grown from a corner.

    Returns:
        core ids. Shape: (M,), K <= M <= chip.cores.
    """
    xy = chip.coords()
    key = np.lexsort((np.arange(chip.cores), xy[:, 0] + xy[:, 1], np.maximum(xy[:, 0], xy[:, 1])))
    m = min(chip.cores, max(k, int(np.ceil(k * (1 + slack)))))
    return np.sort(key[:m])


def cost_matrix(chip: ChipSpec, cores: np.ndarray, energy: bool) -> np.ndarray:
    """Per-packet cost between candidate cores: energy (J, scaled to pJ) or plain hops.

    Shape: (M, M).
    """
    a, b = np.meshgrid(cores, cores, indexing="ij")
    geo = Geometry(chip)
    return geo.energy(a, b) * 1e12 if energy else geo.hops(a, b).astype(float)


def qap_cost(S: np.ndarray, D: np.ndarray, pos: np.ndarray) -> float:
    """½ Σ S_ij D[pos_i, pos_j]."""
    return 0.5 * float((S * D[np.ix_(pos, pos)]).sum())


def greedy_place(S: np.ndarray, D: np.ndarray, fits=None) -> np.ndarray:
    """Constructive placement: heaviest-communicating cluster first, each onto the free position
    minimising its traffic-weighted cost to the clusters already placed.

    Args:
        S: symmetric traffic. Shape: (K, K).
        D: position cost. Shape: (M, M).
        fits: optional ``fits(cluster, position) -> bool`` for heterogeneous cores.

    Returns:
        position index per cluster. Shape: (K,).
    """
    k, m = len(S), len(D)
    pos = np.full(k, -1)
    free = np.ones(m, dtype=bool)
    placed = np.zeros(k, dtype=bool)
    centre = int(np.argmin(D.sum(axis=1)))
    tie = D[centre] * 1e-9  # prefer positions near the middle of the region on ties
    strength = S.sum(axis=1)
    for _ in range(k):
        link = S[:, placed].sum(axis=1) if placed.any() else strength
        a = int(np.argmax(np.where(placed, -np.inf, link + 1e-12 * strength)))
        cost = D[:, pos[placed]] @ S[a, placed] + tie if placed.any() else tie.copy()
        cost[~free] = np.inf
        if fits is not None:
            for p in np.argsort(cost):
                if np.isfinite(cost[p]) and fits(a, int(p)):
                    break
            else:
                raise ValueError(f"cluster {a} fits no free position")
            p = int(p)
        else:
            p = int(np.argmin(cost))
        pos[a], free[p], placed[a] = p, False, True
    return pos


def anneal(
    S: np.ndarray,
    D: np.ndarray,
    pos: np.ndarray,
    rng: np.random.Generator,
    iters: int = 20000,
    fits=None,
    t_end: float = 1e-3,
) -> np.ndarray:
    """Simulated annealing over swaps / moves from ``pos``; returns the best assignment seen.

    Args:
        S: symmetric traffic. Shape: (K, K).
        D: position cost. Shape: (M, M).
        pos: initial position index per cluster. Shape: (K,).
        rng: random generator.
        iters: number of proposed moves.
        fits: optional ``fits(cluster, position) -> bool``.
        t_end: final temperature as a fraction of the initial one.

    Returns:
        position index per cluster. Shape: (K,).
    """
    k, m = len(S), len(D)
    pos = pos.copy()
    if k < 2 or iters <= 0:
        return pos
    occ = np.full(m, -1)
    occ[pos] = np.arange(k)
    cur = qap_cost(S, D, pos)
    best, best_pos = cur, pos.copy()
    deltas = []
    t0 = None
    for it in range(iters):
        a = int(rng.integers(k))
        p = int(rng.integers(m))
        pa = pos[a]
        if p == pa:
            continue
        b = occ[p]
        if fits is not None and (not fits(a, p) or (b >= 0 and not fits(b, pa))):
            continue
        if b >= 0:
            diff = S[a] - S[b]
            dd = D[p, pos] - D[pa, pos]
            delta = float(diff @ dd) - (diff[a] * dd[a] + diff[b] * dd[b])
        else:
            dd = D[p, pos] - D[pa, pos]
            delta = float(S[a] @ dd) - S[a, a] * dd[a]
        if t0 is None:
            deltas.append(abs(delta))
            if len(deltas) < 50:
                continue
            t0 = max(np.mean(deltas), 1e-12)
        temp = t0 * t_end ** (it / iters)
        if delta <= 0 or rng.random() < np.exp(-delta / temp):
            pos[a] = p
            occ[p] = a
            occ[pa] = b
            if b >= 0:
                pos[b] = pa
            cur += delta
            if cur < best - 1e-12:
                best, best_pos = cur, pos.copy()
    return best_pos
