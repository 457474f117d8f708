"""Shared steps of the partitioning methods: atoms, cluster packing, cluster placement."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from hwmaps.chips.spec import ChipSpec
from hwmaps.hypergraph import Hypergraph, build
from hwmaps.ir import Network, Tile
from hwmaps.partition import CapacityError, Packer, make_tiles
from hwmaps.place import anneal, candidate_cores, cost_matrix, greedy_place

#: Atoms per core for the partitioners (finer atoms: more freedom, slower). A tuning choice.
ATOMS_PER_CORE = 8


def atoms(network: Network, chip: ChipSpec, col_cuts=None) -> tuple[list[Tile], Hypergraph]:
    """The core-sized tiles of :func:`make_tiles` (``col_cuts`` passed on), each cut into row
    pieces of at most 1/ATOMS_PER_CORE of the smallest core's neurons, and their traffic.

    Atoms nest inside the core-sized tiles, so a placement of those tiles (e.g. the
    ``sequential`` baseline's) is also a placement of the atoms (:func:`parent_tiles`).
    """
    n_min = int(chip.capacities()[0].min())
    step = max(1, n_min // ATOMS_PER_CORE)
    tiles = []
    for t in make_tiles(network, chip, col_cuts=col_cuts):
        cuts = np.linspace(t.row0, t.row1, -(-t.rows // step) + 1).round().astype(int)
        tiles += [Tile(t.block, int(a), int(b), t.col0, t.col1) for a, b in pairwise(cuts)]
    return tiles, build(network, tiles)


def parent_tiles(fine: list[Tile], coarse: list[Tile]) -> np.ndarray:
    """Index of the coarse tile holding each fine tile (fine tiles nest in coarse ones).

    Shape: (len(fine),).
    """
    where = {(t.block, t.col0, t.row0): i for i, t in enumerate(coarse)}
    out, cur = np.empty(len(fine), dtype=np.int64), {}
    for j, t in enumerate(fine):
        i = where.get((t.block, t.col0, t.row0))
        if i is None:
            i = cur[(t.block, t.col0)]
        cur[(t.block, t.col0)] = i
        out[j] = i
    return out


def check_fits(chip: ChipSpec, hg: Hypergraph, tiles: list[Tile]) -> None:
    """Raise CapacityError when the network cannot fit the board even fully packed."""
    cap_n, cap_s = chip.capacities()
    for t in range(hg.n_tiles):
        if hg.neurons[t] > cap_n.min() or hg.synapses[t] > cap_s.min():
            if not ((hg.neurons[t] <= cap_n) & (hg.synapses[t] <= cap_s)).any():
                raise CapacityError(f"tile {tiles[t]} fits no core of {chip.name}")
    need = max(hg.neurons.sum() / cap_n.sum(), hg.synapses.sum() / cap_s.sum())
    if need > 1:
        big = int(np.argmax(hg.synapses))
        raise CapacityError(
            f"network needs {hg.neurons.sum():.0f} neurons and {hg.synapses.sum():.0f} synapses; "
            f"{chip.name} holds {cap_n.sum()} and {cap_s.sum()} over {chip.cores} cores "
            f"(largest block {tiles[big].block!r})"
        )


def place_clusters(
    chip: ChipSpec,
    hg: Hypergraph,
    cluster_of: np.ndarray,
    S: np.ndarray,
    rng: np.random.Generator,
    energy: bool,
    greedy: bool,
    iters: int,
) -> np.ndarray:
    """Assign clusters to cores (QAP by annealing); returns the core id of every tile.

    Args:
        S: symmetric cluster traffic. Shape: (K, K).
        energy: direction-weighted hop energy (True) or plain hop count (False) as distance.
        greedy: start from the constructive placement (True) or from cluster order (False).
    """
    k = len(S)
    if k > chip.cores:
        raise CapacityError(f"{k} clusters exceed the {chip.cores} cores of {chip.name}")
    cand = candidate_cores(chip, k)
    D = cost_matrix(chip, cand, energy)
    cap_n, cap_s = chip.capacities()
    load_n = np.bincount(cluster_of, hg.neurons, k)
    load_s = np.bincount(cluster_of, hg.synapses, k)
    fits = None
    if chip.core_neurons is not None or chip.core_synapses is not None:

        def fits(c: int, p: int) -> bool:
            return load_n[c] <= cap_n[cand[p]] and load_s[c] <= cap_s[cand[p]]

    if greedy:
        pos = greedy_place(S, D, fits)
    else:
        pos = np.arange(k)
        if fits is not None:
            pos = greedy_place(np.zeros_like(S), D, fits)
    iters = min(iters, 500 * k)  # small problems converge long before
    pos = anneal(S, D, pos, rng, iters=iters, fits=fits)
    return cand[pos[cluster_of]]


def pack_into_clusters(
    chip: ChipSpec, hg: Hypergraph, tiles: list[Tile], order, choose, first_new: int = 0
) -> np.ndarray:
    """Add tiles in ``order``; ``choose(t, packer, k)`` returns candidate clusters in preference
    order; the first that fits wins, else a new cluster (ids from ``first_new``).

    Returns:
        cluster id of every tile, compacted to 0..K-1. Shape: (T,).
    """
    pk = Packer(chip, hg, uniform=True)
    k = first_new
    for t in order:
        for c in choose(t, pk, k):
            if pk.fits(c, [t]):
                pk.add(c, [t])
                break
        else:
            if k >= chip.cores or not pk.fits(k, [t]):
                raise CapacityError(
                    f"tile {tiles[t]} finds no core: {k} cores already open on {chip.name} "
                    f"({chip.cores} cores)"
                )
            pk.add(k, [t])
            k += 1
    return np.unique(pk.core_of, return_inverse=True)[1]
