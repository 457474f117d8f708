"""Blocks -> tiles -> cores under capacity limits (neurons, synapses, fan-in, fan-out).

Tiling: a block whose rows·cols exceed a core is cut into column chunks (when its fan-in or a
single row's synapses exceed the core) and row chunks, split evenly. ``max_rows`` cuts rows finer
(atoms for the partitioners). Packing baselines: ``sequential`` (Lava/PACMAN: graph order,
consecutive core ids, each destination population starts a fresh core) and ``first_fit``
(sinabs-like feasibility only: largest tile first into the lowest core id that fits).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from hwmaps.chips.spec import ChipSpec
from hwmaps.hypergraph import Hypergraph
from hwmaps.ir import Network, Tile


class CapacityError(ValueError):
    """The network does not fit the chip (names the block, its size and the limit)."""


def make_tiles(
    network: Network,
    chip: ChipSpec,
    max_rows: int | None = None,
    col_cuts: dict[str, Sequence[int]] | None = None,
) -> list[Tile]:
    """Cut every block into tiles that fit the largest core.

    Args:
        network: the network.
        chip: the chip (largest core capacity and fan-in decide the cuts).
        max_rows: optional finer row cut (atoms).
        col_cuts: optional column cut points per block name (0 < cut < cols, increasing;
            input-split tiling); the pieces must fit a core's synapses (one row) and fan-in.

    Returns:
        Tiles in network order, row-major within a block.
    """
    cap_n, cap_s = chip.capacities()
    n_max, s_max = int(cap_n.max()), int(cap_s.max())
    tiles = []
    for b in network.blocks:
        c_max = min(b.cols, s_max, chip.fan_in or b.cols)
        n_col = math.ceil(b.cols / c_max)
        ccut = np.linspace(0, b.cols, n_col + 1).round().astype(int)
        if col_cuts and b.name in col_cuts:
            ccut = np.array([0, *col_cuts[b.name], b.cols])
        widest = int(np.diff(ccut).max())
        if widest > c_max:
            raise ValueError(f"col_cuts of block {b.name!r}: a piece of {widest} columns "
                             f"exceeds the {c_max} a core takes")  # fmt: skip
        r_max = min(b.rows, n_max, s_max // widest)
        if max_rows is not None:
            r_max = max(1, min(r_max, max_rows))
        n_row = math.ceil(b.rows / r_max)
        rcut = np.linspace(0, b.rows, n_row + 1).round().astype(int)
        for r0, r1 in itertools.pairwise(rcut):
            for c0, c1 in itertools.pairwise(ccut):
                tiles.append(Tile(b.name, int(r0), int(r1), int(c0), int(c1)))
    return tiles


class Packer:
    """Tracks per-core load (neurons, synapses, distinct source units) while tiles are placed."""

    def __init__(self, chip: ChipSpec, hg: Hypergraph, uniform: bool = False) -> None:
        self.chip, self.hg = chip, hg
        self.cap_n, self.cap_s = chip.capacities()
        if uniform:  # clusters not yet on a core: the smallest core's capacity
            self.cap_n = np.full_like(self.cap_n, self.cap_n.min())
            self.cap_s = np.full_like(self.cap_s, self.cap_s.min())
        self.n = np.zeros(chip.cores)
        self.s = np.zeros(chip.cores)
        self.fan: dict[int, np.ndarray] = {}
        self.core_of = np.full(hg.n_tiles, -1, dtype=np.int64)

    def _fan(self, core: int) -> np.ndarray:
        if core not in self.fan:
            self.fan[core] = np.zeros(self.hg.n_units, dtype=np.int32)
        return self.fan[core]

    def fits(self, core: int, tiles: Sequence[int]) -> bool:
        """Whether ``tiles`` can be added to ``core``."""
        hg, tiles = self.hg, list(tiles)
        if self.n[core] + hg.neurons[tiles].sum() > self.cap_n[core]:
            return False
        if self.s[core] + hg.synapses[tiles].sum() > self.cap_s[core]:
            return False
        if self.chip.fan_in is None:
            return True
        fan = self.fan.get(core)
        mask = np.zeros(self.hg.n_units, dtype=bool) if fan is None else fan > 0
        for t in tiles:
            mask[hg.src_lo[t] : hg.src_hi[t]] = True
        return int(mask.sum()) <= self.chip.fan_in

    def add(self, core: int, tiles: Sequence[int]) -> None:
        """Place ``tiles`` on ``core`` (no check)."""
        for t in tiles:
            self.n[core] += self.hg.neurons[t]
            self.s[core] += self.hg.synapses[t]
            if self.chip.fan_in is not None:
                self._fan(core)[self.hg.src_lo[t] : self.hg.src_hi[t]] += 1
            self.core_of[t] = core

    def remove(self, tiles: Sequence[int]) -> None:
        """Take ``tiles`` off their cores."""
        for t in tiles:
            core = self.core_of[t]
            self.n[core] -= self.hg.neurons[t]
            self.s[core] -= self.hg.synapses[t]
            if self.chip.fan_in is not None:
                self.fan[core][self.hg.src_lo[t] : self.hg.src_hi[t]] -= 1
            self.core_of[t] = -1


def no_room(tiles: Sequence[Tile], t: int, chip: ChipSpec) -> CapacityError:
    """The error raised when tile ``t`` finds no core."""
    tile = tiles[t]
    return CapacityError(
        f"block {tile.block!r}: tile rows {tile.row0}:{tile.row1} x cols {tile.col0}:{tile.col1} "
        f"({tile.rows} neurons, {tile.rows * tile.cols} synapses) finds no free core on "
        f"{chip.name} ({chip.cores} cores of <= {int(chip.capacities()[0].max())} neurons, "
        f"<= {int(chip.capacities()[1].max())} synapses, fan-in {chip.fan_in})"
    )


def sequential(tiles: Sequence[Tile], hg: Hypergraph, network: Network, chip: ChipSpec):
    """Graph order onto consecutive core ids; a new destination population opens a new core.

    Returns:
        core id per tile. Shape: (T,).
    """
    pk, core, prev = Packer(chip, hg), 0, None
    dest = {b.name: b.dest for b in network.blocks}
    for i, t in enumerate(tiles):
        if prev is not None and dest[t.block] != prev and pk.n[core] > 0:
            core += 1
        prev = dest[t.block]
        while core < chip.cores and not pk.fits(core, [i]):
            core += 1
        if core >= chip.cores:
            raise no_room(tiles, i, chip)
        pk.add(core, [i])
    return pk.core_of


def first_fit(tiles: Sequence[Tile], hg: Hypergraph, network: Network, chip: ChipSpec):
    """First-fit decreasing: largest tile first, into the lowest core id where it fits.

    Returns:
        core id per tile. Shape: (T,).
    """
    pk = Packer(chip, hg)
    order = sorted(range(len(tiles)), key=lambda i: (-hg.synapses[i], -hg.neurons[i], i))
    for i in order:
        ok = (pk.n + hg.neurons[i] <= pk.cap_n) & (pk.s + hg.synapses[i] <= pk.cap_s)
        core = next((int(c) for c in np.flatnonzero(ok) if pk.fits(int(c), [i])), None)
        if core is None:
            raise no_room(tiles, i, chip)
        pk.add(core, [i])
    return pk.core_of


def violations(hg: Hypergraph, core_of: np.ndarray, chip: ChipSpec) -> list[str]:
    """Capacity violations of an assignment (empty when it is valid)."""
    pk = Packer(chip, hg)
    out = []
    for core in np.unique(core_of):
        tiles = np.flatnonzero(core_of == core)
        if not pk.fits(int(core), tiles):
            out.append(f"core {core}: tiles {tiles.tolist()} exceed neurons/synapses/fan-in")
    if chip.fan_out is None and chip.max_dest_cores is None:
        return out
    edges: dict[int, int] = {}
    dests: dict[int, set] = {}
    for i in range(hg.n_nets):
        if hg.src[i] < 0:
            continue
        c = int(core_of[hg.src[i]])
        targets = set(core_of[hg.sinks(i)].tolist())
        if hg.gather[i]:  # partial sums: each piece core sends to the accumulator's core
            for p in targets - {c}:
                edges[p] = edges.get(p, 0) + int(hg.count[i])
                dests.setdefault(p, set()).add(c)
            continue
        edges[c] = edges.get(c, 0) + int(hg.count[i]) * len(targets)
        dests.setdefault(c, set()).update(targets - {c})
    for c, e in edges.items():
        if chip.fan_out is not None and e > chip.fan_out:
            out.append(f"core {c}: fan-out {e} core edges > fan_out={chip.fan_out}")
    for c, d in dests.items():
        if chip.max_dest_cores is not None and len(d) > chip.max_dest_cores:
            out.append(
                f"core {c}: {len(d)} destination cores > max_dest_cores={chip.max_dest_cores}"
            )
    return out
