"""Local search on a tile -> core assignment under the hypergraph communication energy.

Objective (J per step), one net per source unit, a spike sent once per distinct sink core:

.. math:: C = \\sum_{nets\\ i} w_i \\sum_{c \\in cores(sinks_i)} \\big(E(core(src_i), c)
    + e_{spike}\\big)

with ``E`` the XY-route energy (E-W and N-S hops priced apart, chip crossings as links; 0 between
cores behind one router) and ``E = 0`` for external sources. A gather (partial-sum) net costs
nothing, spike included, on its accumulator's own core (:mod:`hwmaps.hypergraph`). Every net keeps a count of its sink
tiles per core, so a move is priced from the nets touching the moved tile only. Moves:

* **move** one tile to a core that one of its nets already touches, when it fits;
* **swap** two tiles on two cores (what lets full cores trade), both ways within capacity;
* **group move** all tiles of one block on one core to another core, when they fit there.

Only strictly improving moves are applied, so the result is never worse than the start.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from hwmaps.chips.spec import ChipSpec
from hwmaps.hypergraph import Hypergraph
from hwmaps.partition import Packer
from hwmaps.route import Geometry

#: Smallest gain (J) that counts as an improvement (guards against float noise).
EPS = 1e-18
#: Cores (the most promising by the mover's own gain) tried for swaps per tile. A tuning choice.
SWAP_CORES = 4


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


class LocalSearch:
    """Incremental state of an assignment: per-net sink counts per core and core loads.

    Args:
        hg: the hypergraph of the tiles.
        core_of: core id of every tile. Shape: (T,).
        chip: the chip.
        inc: :func:`incidence` of ``hg`` (computed when None).
        block_of: a group label per tile (e.g. its block) for :meth:`try_groups`.
    """

    def __init__(
        self, hg: Hypergraph, core_of: np.ndarray, chip: ChipSpec, inc=None, block_of=None
    ) -> None:
        self.hg, self.chip = hg, chip
        self.block_of = list(range(hg.n_tiles)) if block_of is None else list(block_of)
        self.inc = incidence(hg) if inc is None else inc
        self.cores, loc = np.unique(np.asarray(core_of), return_inverse=True)
        a, b = np.meshgrid(self.cores, self.cores, indexing="ij")
        self.E = Geometry(chip).energy(a, b).tolist()
        self.spike = chip.e_spike_j
        self.src, self.w, self.g = hg.src.tolist(), hg.weight.tolist(), hg.gather.tolist()
        self.loc = loc.tolist()
        self.cnt = [Counter(self.loc[p] for p in hg.sinks(i).tolist()) for i in range(hg.n_nets)]
        self.pk = Packer(chip, hg)
        for c in range(len(self.cores)):
            self.pk.add(int(self.cores[c]), np.flatnonzero(loc == c))
        self.members: list[set[int]] = [set() for _ in self.cores]
        for t, c in enumerate(self.loc):
            self.members[c].add(t)

    def core_of(self) -> np.ndarray:
        """Core id of every tile. Shape: (T,)."""
        return self.cores[np.asarray(self.loc, dtype=np.int64)]

    def delta(self, t: int, c: int) -> float:
        """Change of the objective when tile ``t`` moves to core index ``c``."""
        h, E, loc, spike = self.loc[t], self.E, self.loc, self.spike
        d = 0.0
        for i in self.inc[t]:
            wi = self.w[i]
            if wi == 0.0:
                continue
            si, g = self.src[i], self.g[i]
            if si == t:
                row_c, row_h = E[c], E[h]
                n = self.cnt[i]
                d += wi * sum(row_c[x] - row_h[x] for x in n)
                if g:  # the piece on the new core becomes free, one on the old core pays
                    d += wi * spike * ((h in n) - (c in n))
                continue
            n = self.cnt[i]
            sc = loc[si] if si >= 0 else -1
            e_src = E[sc] if si >= 0 else None
            if n[h] == 1:
                d -= wi * ((e_src[h] if e_src else 0.0) + (0.0 if g and h == sc else spike))
            if n.get(c, 0) == 0:
                d += wi * ((e_src[c] if e_src else 0.0) + (0.0 if g and c == sc else spike))
        return d

    def apply(self, t: int, c: int) -> None:
        """Move tile ``t`` to core index ``c`` (no capacity check)."""
        h = self.loc[t]
        for i in self.inc[t]:
            if self.src[i] != t:
                n = self.cnt[i]
                n[h] -= 1
                if not n[h]:
                    del n[h]
                n[c] += 1
        self.loc[t] = c
        self.members[h].discard(t)
        self.members[c].add(t)
        self.pk.remove([t])
        self.pk.add(int(self.cores[c]), [t])

    def fits_swap(self, t: int, u: int) -> bool:
        """Whether tiles ``t`` and ``u`` (on different cores) can trade places."""
        ct, cu = int(self.cores[self.loc[t]]), int(self.cores[self.loc[u]])
        self.pk.remove([t, u])
        ok = self.pk.fits(cu, [t]) and self.pk.fits(ct, [u])
        self.pk.add(ct, [t])
        self.pk.add(cu, [u])
        return ok

    def candidates(self, t: int) -> set[int]:
        """Core indices touched by the nets of ``t``, other than its own."""
        out: set[int] = set()
        for i in self.inc[t]:
            out.update(self.cnt[i])
            if self.src[i] >= 0:
                out.add(self.loc[self.src[i]])
        out.discard(self.loc[t])
        return out

    def try_tile(self, t: int, swaps: bool) -> bool:
        """Apply the best improving move (or swap) of tile ``t``; whether one was applied."""
        h = self.loc[t]
        best, best_c = -EPS, None
        full = []
        for c in self.candidates(t):
            d = self.delta(t, c)
            if d < best and self.pk.fits(int(self.cores[c]), [t]):
                best, best_c = d, c
            elif swaps:
                full.append((d, c))
        if best_c is not None:
            self.apply(t, best_c)
            return True
        for d, c in sorted(full)[:SWAP_CORES]:
            self.apply(t, c)  # price the partners' moves with t already moved (shared nets)
            gains = sorted((d + self.delta(u, h), u) for u in self.members[c] if u != t)
            self.apply(t, h)
            for total, u in gains:
                if total >= -EPS:
                    break
                if self.fits_swap(t, u):
                    self.apply(t, c)
                    self.apply(u, h)
                    return True
        return False

    def try_groups(self) -> int:
        """Move whole (block, core) groups of tiles to another core when that helps."""
        moved = 0
        blocks = {}
        for t, c in enumerate(self.loc):
            blocks.setdefault((self.block_of[t], c), []).append(t)
        for (_, h), group in blocks.items():
            if len(group) < 2 or any(self.loc[t] != h for t in group):
                continue
            cands = set().union(*(self.candidates(t) for t in group)) - {h}
            best, best_c = -EPS, None
            for c in cands:
                if not self.pk.fits(int(self.cores[c]), group):
                    continue
                d = 0.0
                for t in group:  # sequential pricing: each move sees the previous ones
                    d += self.delta(t, c)
                    self.apply(t, c)
                for t in group:
                    self.apply(t, h)
                if d < best:
                    best, best_c = d, c
            if best_c is not None:
                for t in group:
                    self.apply(t, best_c)
                moved += 1
        return moved


def refine(
    hg: Hypergraph,
    core_of: np.ndarray,
    chip: ChipSpec,
    rng: np.random.Generator,
    passes: int = 4,
    block_of=None,
    inc=None,
) -> np.ndarray:
    """Improve ``core_of`` by moves, swaps and group moves (module docstring) until no pass
    improves or ``passes`` passes ran; the result is never worse than ``core_of``.

    Args:
        hg: the hypergraph of the tiles.
        core_of: start assignment, core id per tile. Shape: (T,).
        chip: the chip (capacities, energies).
        rng: random generator (visiting order).
        passes: maximum passes over all tiles.
        block_of: block id per tile, enabling group moves (optional).
        inc: :func:`incidence` of ``hg`` (computed when None).

    Returns:
        core id per tile. Shape: (T,).
    """
    ls = LocalSearch(hg, core_of, chip, inc, block_of)
    for _ in range(passes):
        moved = sum(ls.try_tile(t, swaps=True) for t in rng.permutation(hg.n_tiles).tolist())
        if block_of is not None:
            moved += ls.try_groups()
        if not moved:
            break
    return ls.core_of()
