"""Spike traffic of tiled blocks as a hypergraph: one net per source unit.

A net's pins are the tile that produces the unit (or none for external inputs) and every tile
that reads it; its weight is the unit's measured events per step. A spike is sent once per
distinct destination core, so a net costs ``w · Σ_{c ∈ cores(sinks)} hop(core(src), c)``;
a plain graph edge-cut would count a multicast once per sink tile instead.

**Partial sums.** The tiles of a column-split (input-split) block send partial sums to the
block's first column tile, which holds the accumulating units. One *gather* net per row: its
``src`` is the first column tile, its pins the other column tiles of that row, and it costs
``w · Σ_{c ∈ cores(pins), c ≠ core(src)} hop(c, core(src))`` — pieces sharing a core send one
merged partial sum, pieces on the accumulator's core send none (hop energy is symmetric, so
the cost has the multicast form; :func:`core_traffic` books it in the reverse direction).
Rate ``w`` (an estimate, checked against the simulated protocol in
benchmarks/partial_sums.py): a piece sends its partial sum when it moved more than θ_z since
last sent (:mod:`hwmaps.partial_sums`), as the layer sends a latent unit. The full sum moves at
the accumulated unit's measured rate ``ev_r``; a partial sum moves by the part of that change its
inputs cause, and a sum of many event contributions moves with the square root of the events
it holds, so

.. math:: w_r = ev_r \\sqrt{s_r},\\qquad s_r = \\frac{\\sum_{i \\in \\text{pieces}} ev_i}{\\sum_i ev_i}

(``s_r``: the share of the row's input events read outside the accumulating tile). On real
traces (benchmarks/partial_sums.py) this is 0.85–1.65× the simulated protocol's packets; the
earlier ``w_r = ev_r`` was 1.14–4.58×. For
units whose events are unknown (outputs), ``min(1, Σ source events of the pieces)`` (an
accumulator changes at most once a step). Nets with the same source, sinks and kind are merged
(weights add).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwmaps.ir import Network, Tile


@dataclass(frozen=True)
class Hypergraph:
    """Tiles (vertices) and nets as flat arrays.

    Shape: ``weight``, ``count`` (units merged into the net), ``src``, ``gather`` (partial-sum
    net, module docstring) (N,); ``ptr`` (N+1,); ``pins`` (P,) sink tile ids of net i in
    ``pins[ptr[i]:ptr[i+1]]``; per-tile ``neurons``, ``synapses``, ``synops`` (events·rows per
    step), ``active`` (expected active neurons per step), ``src_lo``/``src_hi`` (global source
    unit range, for fan-in) — all (T,).
    """

    weight: np.ndarray
    count: np.ndarray
    src: np.ndarray
    gather: np.ndarray
    ptr: np.ndarray
    pins: np.ndarray
    neurons: np.ndarray
    synapses: np.ndarray
    synops: np.ndarray
    active: np.ndarray
    src_lo: np.ndarray
    src_hi: np.ndarray
    n_units: int

    @property
    def n_tiles(self) -> int:
        return len(self.neurons)

    @property
    def n_nets(self) -> int:
        return len(self.weight)

    def sinks(self, i: int) -> np.ndarray:
        """Sink tiles of net ``i``."""
        return self.pins[self.ptr[i] : self.ptr[i + 1]]


def build(network: Network, tiles: Sequence[Tile]) -> Hypergraph:
    """Build the traffic hypergraph of ``tiles`` (see module docstring)."""
    sizes = network.populations()
    offset, total = {}, 0
    for pop in sorted(sizes):
        offset[pop], total = total, total + sizes[pop]
    blocks = {b.name: b for b in network.blocks}
    events = np.zeros(total)
    for pop in sizes:
        ev = network.unit_events(pop)
        events[offset[pop] : offset[pop] + len(ev)] = np.nan_to_num(ev, nan=-1.0)
    producer = np.full(total, -1, dtype=np.int64)
    n = len(tiles)
    neurons, synapses, synops, active = (np.zeros(n) for _ in range(4))
    src_lo, src_hi = np.zeros(n, np.int64), np.zeros(n, np.int64)
    reads: list[tuple[np.ndarray, np.ndarray]] = []
    mains: dict[tuple[str, int], int] = {}
    for i, t in enumerate(tiles):
        b = blocks[t.block]
        g0 = offset[b.source] + b.source_start + t.col0
        src_lo[i], src_hi[i] = g0, g0 + t.cols
        ev = np.asarray(b.source_events[t.col0 : t.col1])
        neurons[i], synapses[i] = t.rows, t.rows * t.cols
        synops[i] = ev.sum() * t.rows
        if t.col0 == 0:
            d0 = offset[b.dest] + b.dest_start + t.row0
            producer[d0 : d0 + t.rows] = i
            own = events[d0 : d0 + t.rows]  # -1 where unknown (outputs): count as active
            active[i] = np.where(own < 0, 1.0, np.minimum(own, 1.0)).sum()
            for r in range(t.row0, t.row1):
                mains[(t.block, r)] = i
        else:
            active[i] = t.rows * min(1.0, float(ev.sum()))
        reads.append((np.arange(g0, g0 + t.cols), np.full(t.cols, i)))
    nets: dict[tuple[int, tuple[int, ...]], float] = {}
    count: dict[tuple[int, tuple[int, ...]], int] = {}
    if reads:
        units = np.concatenate([r[0] for r in reads])
        readers = np.concatenate([r[1] for r in reads])
        order = np.lexsort((readers, units))
        units, readers = units[order], readers[order]
        cuts = np.flatnonzero(np.diff(units)) + 1
        for grp_u, grp_r in zip(np.split(units, cuts), np.split(readers, cuts)):
            u = int(grp_u[0])
            key = (int(producer[u]), tuple(np.unique(grp_r).tolist()))
            nets[key] = nets.get(key, 0.0) + max(float(events[u]), 0.0)
            count[key] = count.get(key, 0) + 1
    pieces: dict[tuple[str, int], list[int]] = {}
    for i, t in enumerate(tiles):
        if t.col0 > 0:
            for r in range(t.row0, t.row1):
                pieces.setdefault((t.block, r), []).append(i)
    gathers: dict[tuple[int, tuple[int, ...]], float] = {}
    gcount: dict[tuple[int, tuple[int, ...]], int] = {}
    for (name, r), ps in pieces.items():
        b = blocks[name]
        own = float(events[offset[b.dest] + b.dest_start + r])
        held = sum(sum(b.source_events[tiles[p].col0 : tiles[p].col1]) for p in ps)
        if own >= 0:  # sqrt model (module docstring); 0 when the row reads no events at all
            row_events = sum(b.source_events)
            w = own * math.sqrt(held / row_events) if row_events > 0 else 0.0
        else:
            w = min(1.0, held)
        key = (mains[(name, r)], tuple(sorted(ps)))
        gathers[key] = gathers.get(key, 0.0) + w
        gcount[key] = gcount.get(key, 0) + 1
    keys = list(nets) + list(gathers)
    weight = [nets[k] for k in nets] + [gathers[k] for k in gathers]
    counts = [count[k] for k in nets] + [gcount[k] for k in gathers]
    ptr = np.zeros(len(keys) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(k[1]) for k in keys])
    pins = np.fromiter((p for k in keys for p in k[1]), dtype=np.int64, count=int(ptr[-1]))
    gather = np.zeros(len(keys), dtype=bool)
    gather[len(keys) - len(gathers) :] = True
    return Hypergraph(
        weight=np.array(weight, dtype=float),
        count=np.array(counts, dtype=np.int64),
        gather=gather,
        src=np.array([k[0] for k in keys], dtype=np.int64),
        ptr=ptr,
        pins=pins,
        neurons=neurons,
        synapses=synapses,
        synops=synops,
        active=active,
        src_lo=src_lo,
        src_hi=src_hi,
        n_units=total,
    )


def core_traffic(hg: Hypergraph, core_of: np.ndarray, n_cores: int) -> np.ndarray:
    """Events per step from core to core, each net counted once per distinct sink core
    (a gather net once per distinct piece core other than the accumulator's, booked from the
    piece's core to the accumulator's).

    Args:
        hg: the hypergraph.
        core_of: core (or cluster) id of every tile. Shape: (T,).
        n_cores: number of cores / clusters.

    Returns:
        W with W[a, b] = events per step sent from a to b (diagonal: local deliveries);
        row ``n_cores`` holds external inputs. Shape: (n_cores + 1, n_cores).
    """
    W = np.zeros((n_cores + 1, n_cores))
    net_of_pin = np.repeat(np.arange(hg.n_nets), np.diff(hg.ptr))
    dst = core_of[hg.pins]
    pairs = np.unique(net_of_pin * n_cores + dst)
    nets, dst = np.divmod(pairs, n_cores)
    src = np.where(hg.src[nets] >= 0, core_of[np.maximum(hg.src[nets], 0)], n_cores)
    g = hg.gather[nets]
    keep = ~g | (dst != src)  # a piece on the accumulator's core sends nothing
    nets, dst, src, g = nets[keep], dst[keep], src[keep], g[keep]
    # partial sums travel from the piece's core to the accumulator's
    np.add.at(W, (np.where(g, dst, src), np.where(g, src, dst)), hg.weight[nets])
    return W
