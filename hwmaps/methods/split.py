"""Input-split tiling of V blocks: each piece sits beside the core that produces its inputs.

For a factored layer the rank units are the traffic hub (REFERENCES.md §D): every output unit of
layer k is read by the V blocks of layer k+1, which hold only R rank units but R synapses per
input. Kept whole, the V blocks of a layer fill a core of their own and every event of layer k
crosses the NoC. Cut by *inputs* (column groups) instead, a piece reading units a..b needs
``rows`` neurons (its partial sums of the R rank units) and ``rows·(b - a)`` synapses and can
share a core with the producer rows of a..b: the spikes stay local and only partial sums travel
to the accumulating piece (gather nets of :mod:`hwmaps.hypergraph`, counted as events of the
rank units).

Group size per produced population: ``k = min(N - R_S, ⌊S / (c_p + R_S)⌋, fan_in - c_p)`` units
per core (N, S: the smallest core's neurons and synapses, R_S: rows of the V blocks reading the
population, c_p: columns of its producer, i.e. the synapses of one producer row); groups are
runs of the producer's atoms (:func:`hwmaps.methods.common.atoms`) of at most k units.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from hwmaps.chips.spec import ChipSpec
from hwmaps.ir import Network, Tile
from hwmaps.partition import make_tiles


def _atom_cuts(t: Tile, step: int) -> np.ndarray:
    """Row cut points of the atoms of core-sized tile ``t`` (as in ``atoms``)."""
    return np.linspace(t.row0, t.row1, -(-t.rows // step) + 1).round().astype(int)


def input_split_cuts(network: Network, chip: ChipSpec, step: int) -> dict[str, list[int]]:
    """Column cut points of the V blocks that read units produced by a block (module docstring).

    Args:
        network: the network.
        chip: the chip (smallest core's capacity, fan-in).
        step: atom height of the mapper (rows per atom).

    Returns:
        {V block name: increasing cut points in 1..cols-1}; empty when nothing splits.
    """
    cap_n, cap_s = chip.capacities()
    n_min, s_min = int(cap_n.min()), int(cap_s.min())
    out: dict[str, list[int]] = {}
    mains = [t for t in make_tiles(network, chip) if t.col0 == 0]
    for pop in network.populations():
        readers = [b for b in network.blocks if b.source == pop and b.kind == "V"]
        producers = [b for b in network.blocks if b.dest == pop]
        if not readers or not producers:
            continue
        r_s = sum(b.rows for b in readers)
        c_p = max(b.cols for b in producers)
        k = min(n_min - r_s, s_min // (c_p + r_s))
        if chip.fan_in is not None:
            k = min(k, chip.fan_in - c_p)
        if k < 1:
            continue
        bounds = {0}
        for b in producers:
            for t in mains:
                if t.block == b.name:
                    bounds.update((b.dest_start + _atom_cuts(t, step)).tolist())
        edges = sorted(bounds)
        units: list[int] = [0]  # greedy runs of atoms of at most k units; big atoms cut evenly
        for a, z in pairwise(edges):
            if z - units[-1] <= k:
                continue
            if a > units[-1]:
                units.append(a)
            while z - units[-1] > k:
                units.append(units[-1] + k)
        for b in readers:
            lo, hi = b.source_start, b.source_start + b.cols
            cuts = sorted({u - lo for u in units if lo < u < hi})
            if cuts:
                out[b.name] = cuts
    return out


def split_order(tiles: list[Tile], network: Network, cuts: dict[str, list[int]]) -> list[int]:
    """Graph order with every input-split piece moved right after the tiles producing its
    inputs (so that order-based packing puts them on one core)."""
    blocks = {b.name: b for b in network.blocks}
    last: dict[tuple[str, int], int] = {}  # (population, unit) -> index of its producing tile
    for i, t in enumerate(tiles):
        b = blocks[t.block]
        if t.col0 == 0:
            for u in range(b.dest_start + t.row0, b.dest_start + t.row1):
                last[(b.dest, u)] = i
    key = []
    for i, t in enumerate(tiles):
        b = blocks[t.block]
        pos = float(i)
        if t.block in cuts:
            src = last.get((b.source, b.source_start + t.col1 - 1))
            if src is not None:
                pos = src + 0.5 + i * 1e-9
        key.append(pos)
    return sorted(range(len(tiles)), key=key.__getitem__)
