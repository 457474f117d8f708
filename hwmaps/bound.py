"""A lower bound on the NoC energy per step of any valid placement of a network on a chip.

The NoC energy is a sum over source units (one net each, :mod:`hwmaps.hypergraph`), and the
units sharing one *sink set* S (the tiles that read them) are bounded together:

* S must fit one router (``cores_per_router`` cores) for any unit to be free: if S alone needs
  ``r ≥ 2`` routers, every unit pays at least the ``r - 1`` cheapest distinct routers away from
  its own (``prefix[r - 1]``); a unit also pays when its own row cannot join S on one core
  (fan-in of S plus its row's > ``fan_in``, one core per router only).
* Otherwise only the units whose rows fit the room S leaves on its router can be free; the room
  is a budget of neurons (1 per row) and synapses (the row's first column tile); every other
  unit pays at least one hop (``prefix[1]``). The free events are bounded from above by a
  fractional knapsack per resource, the smaller of the two, so the bound stays valid.

**Input-split sink sets.** The ``traffic`` method may cut V blocks by inputs
(:mod:`hwmaps.methods.split`), so a sink set S holding a V block whose inputs are produced by a
block ("splittable") is bounded as ``min(A, B)`` over the two cases of any placement:

* A — all free units of S sit on one router: there S needs its ``n_S`` rows as (partial-sum)
  neurons and each free unit its producer row (1 neuron, the row's synapses) plus ``n_S``
  synapses; every other unit pays at least ``prefix[1]`` (the knapsack as above).
* B — free units on two routers or more: every row of S then has pieces on two routers, and
  its partial sums cross at least one hop. Their rate (:mod:`hwmaps.hypergraph`) is
  ``ev_r·√s_r`` with ``s_r`` the share of the row's input events held by pieces; a piece off
  the accumulator's router holds a unit with events, so ``s_r ≥ s_min`` (the smallest share of
  one such unit): ``Σ_rows ev_r·√s_min · prefix[1]``, shared evenly among the sink sets holding
  the block.

A splittable producer row is charged one synapse (its piece may read a single input).

``prefix[r]`` is the sum of the r smallest per-packet energies ``a|dx| + b|dy|`` over an
unbounded mesh (a = min(E-W hop, chip link), b = min(N-S hop, chip link)): any real mesh offers
no cheaper destinations. External inputs are counted 0, and partial sums outside case B.
Sink sets are bounded independently (they compete for the same cores in reality), so the
bound can be loose; when a placement attains it, that placement is optimal.
"""

from __future__ import annotations

import math

import numpy as np

from hwmaps.chips.spec import ChipSpec
from hwmaps.ir import Network
from hwmaps.partition import make_tiles


def _prefix(chip: ChipSpec, n: int) -> np.ndarray:
    """prefix[r]: the r cheapest distinct-router packet energies summed. Shape: (n + 1,)."""
    a = min(chip.e_hop_ew_j, chip.e_offchip_j)
    b = min(chip.e_hop_ns_j, chip.e_offchip_j)
    rad = math.isqrt(max(n, 1)) + 2
    d = np.arange(-rad, rad + 1)
    e = (a * np.abs(d)[None, :] + b * np.abs(d)[:, None]).ravel()
    e = np.sort(e)[1 : n + 1]  # drop the source itself
    return np.concatenate([[0.0], np.cumsum(e)])


def _free_events(w: np.ndarray, syn: np.ndarray, room_n: float, room_s: float) -> float:
    """Upper bound on the events of units that fit a room of neurons and synapses."""
    if room_n <= 0 or room_s < 0:
        return 0.0
    w_sorted = np.sort(w)[::-1]
    by_n = float(w_sorted[: int(room_n)].sum())
    ratio = np.argsort(-(w / np.maximum(syn, 1e-12)))
    cum = np.cumsum(syn[ratio])
    k = int(np.searchsorted(cum, room_s, side="right"))
    by_s = float(w[ratio][:k].sum())
    if k < len(w):
        by_s += float(w[ratio][k] * (room_s - (cum[k - 1] if k else 0.0)) / syn[ratio][k])
    return min(by_n, by_s)


def _case_a(w, syn, units, blocks, names, rooms) -> float:
    """Events per step that pay at least one hop when all free units of a splittable sink set
    share one router (case A of the module docstring)."""
    room_n, room_s, fan_in = rooms
    n_s = sum(blocks[n].rows for n in names)
    count_room = room_n - n_s
    free = np.ones(len(w), dtype=bool)
    if fan_in is not None:  # one core per router: the producer row's inputs + the unit itself
        free = syn + 1 <= fan_in
        count_room = min(count_room, fan_in - float(syn[free].min()) if free.any() else 0.0)
    free_w = _free_events(w[free], syn[free] + n_s, count_room, room_s)
    return _paid(float(w.sum()), free_w)


def _case_b_rate(block, events) -> float:
    """Least partial-sum events per step of a V block whose rows all have a piece off the
    accumulator's router (case B): ``Σ_rows ev_r · √s_min``."""
    own = events[block.dest][block.dest_start : block.dest_start + block.rows]
    src = np.asarray(block.source_events)
    if not src.any():
        return 0.0
    s_min = float(src[src > 0].min() / src.sum())
    return float(np.nansum(own)) * math.sqrt(s_min)


def _paid(total: float, free: float) -> float:
    """total - free, with float noise (below 1e-9 of total) counted as 0."""
    d = total - free
    return d if d > 1e-9 * total else 0.0


def noc_lower_bound(network: Network, chip: ChipSpec) -> float:
    """Joules per step that every valid placement of ``network`` on ``chip`` spends on the NoC
    at least (module docstring). Shares the tiling rules of :func:`hwmaps.map_network`."""
    cpr = chip.cores_per_router
    cap_n, cap_s = chip.capacities()
    room_n = float(np.sort(cap_n)[-cpr:].sum())
    room_s = float(np.sort(cap_s)[-cpr:].sum())
    blocks = {b.name: b for b in network.blocks}
    chunks = sorted({(t.block, t.col0, t.col1) for t in make_tiles(network, chip)})
    produced = {b.dest for b in network.blocks}
    splittable = {b.name for b in network.blocks if b.kind == "V" and b.source in produced}
    first = {}  # block -> cols of its first column chunk (1 when it may be input-split)
    readers: dict[tuple[str, int], list[int]] = {}  # unit -> chunk ids reading it
    for k, (name, c0, c1) in enumerate(chunks):
        b = blocks[name]
        if c0 == 0:
            first[name] = 1 if name in splittable else c1
        for u in range(b.source_start + c0, b.source_start + c1):
            readers.setdefault((b.source, u), []).append(k)
    producer = {}
    for b in network.blocks:
        for u in range(b.dest_start, b.dest_start + b.rows):
            producer[(b.dest, u)] = b.name
    events = {pop: network.unit_events(pop) for pop in network.populations()}
    groups: dict[tuple[int, ...], list[tuple[float, int, str]]] = {}
    for (pop, u), ks in readers.items():
        w = float(np.nan_to_num(events[pop][u]))
        if (pop, u) in producer and w > 0:
            name = producer[(pop, u)]
            groups.setdefault(tuple(ks), []).append((w, first[name], name))
    prefix = _prefix(chip, 64)
    share: dict[str, int] = {}  # block -> sink sets holding it
    for ks in groups:
        for name in {chunks[k][0] for k in ks}:
            share[name] = share.get(name, 0) + 1
    total = 0.0
    for ks, units in groups.items():
        w = np.array([x[0] for x in units])
        syn = np.array([x[1] for x in units], dtype=float)
        names = {chunks[k][0] for k in ks}
        if names & splittable:
            rooms = (room_n, room_s, chip.fan_in if cpr == 1 else None)
            a = _case_a(w, syn, units, blocks, names, rooms) * prefix[1]
            b = sum(_case_b_rate(blocks[n], events) / share[n] for n in names) * prefix[1]
            total += min(a, b)
            continue
        n_s = sum(blocks[chunks[k][0]].rows for k in ks)
        s_s = sum(blocks[chunks[k][0]].rows * (chunks[k][2] - chunks[k][1]) for k in ks)
        fan = set()
        for k in ks:
            b = blocks[chunks[k][0]]
            fan.update((b.source, b.source_start + c) for c in range(chunks[k][1], chunks[k][2]))
        routers = max(math.ceil(n_s / room_n), math.ceil(s_s / room_s))
        if cpr == 1 and chip.fan_in is not None:
            routers = max(routers, math.ceil(len(fan) / chip.fan_in))
        if routers >= 2:
            total += float(w.sum()) * prefix[min(routers - 1, len(prefix) - 1)]
            continue
        free = np.ones(len(units), dtype=bool)
        if cpr == 1 and chip.fan_in is not None:
            joins = {}  # producer block -> whether its row's fan-in fits beside S's
            for j, (_, cols, name) in enumerate(units):
                if name not in joins:
                    b = blocks[name]
                    own = {(b.source, b.source_start + c) for c in range(cols)}
                    joins[name] = len(fan | own) <= chip.fan_in
                free[j] = joins[name]
        paid = float(w[~free].sum())
        free_w = _free_events(w[free], syn[free], room_n - n_s, room_s - s_s)
        total += _paid(paid + float(w[free].sum()), free_w) * prefix[1]
    return max(total, 0.0)
