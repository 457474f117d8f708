"""ChipSpec: capacities, mesh geometry, per-event energies and latencies of a neuromorphic chip.

Torch-free. Every physical field of a preset carries a source string in ``sources``; values that
nobody published are listed in ``assumptions`` (REFERENCES.md §C).

Geometry: a board is a ``board[0] × board[1]`` grid of chips; a chip is a ``mesh[0] × mesh[1]``
grid of routers; each router serves ``cores_per_router`` cores. Core ids run chip-major, then
router row-major, then slot, so consecutive ids are physically close (what Lava/PACMAN assume).

Synapse memory: ``synapses_per_core = synaptic_memory_bits // weight_bits`` (one weight word per
synapse, index overhead ignored); ``core_synapses`` / ``core_neurons`` override it per core of a
chip for heterogeneous chips (Speck).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

#: Fields that stand for the physical world; each needs a source in a preset.
PHYSICAL_FIELDS: tuple[str, ...] = (
    "mesh",
    "cores_per_router",
    "neurons_per_core",
    "synaptic_memory_bits",
    "weight_bits",
    "fan_in",
    "fan_out",
    "max_dest_cores",
    "e_synop_j",
    "e_neuron_active_j",
    "e_neuron_idle_j",
    "e_spike_j",
    "e_hop_ew_j",
    "e_hop_ns_j",
    "e_offchip_j",
    "static_w",
    "t_synop_s",
    "t_neuron_s",
    "t_hop_ew_s",
    "t_hop_ns_s",
    "t_offchip_s",
    "time_step_s",
)

#: Most cores on a board (2**21, about twice SpiNNaker's million-core machine): the mapper keeps
#: per-core arrays, which stay well under a gigabyte at this size. A bound of this tool, not of
#: any chip.
MAX_CORES = 2**21

_ENERGY_TIME = (*tuple(f for f in PHYSICAL_FIELDS if f.startswith(("e_", "t_"))), "static_w")


@dataclass(frozen=True)
class ChipSpec:
    """A neuromorphic chip (or a board of identical chips) as the mapper sees it.

    Args:
        name: preset name.
        mesh: routers per chip, (rows, cols).
        cores_per_router: cores sharing one router (same tile: zero hops).
        neurons_per_core: neurons (compartments) per core.
        synaptic_memory_bits: synaptic memory per core in bits.
        weight_bits: bits per stored weight; synapses per core = memory // weight_bits.
        fan_in: distinct source units (input axons) per core, None = unlimited.
        fan_out: outgoing core edges per core (Σ over its neurons of distinct target cores).
        max_dest_cores: distinct target cores per core (Speck: 2), None = unlimited.
        e_*_j: energies in joules (synop, neuron update active / idle, spike delivery to a core,
            router hop east-west / north-south, chip-to-chip link crossing).
        static_w: static power per chip in watts.
        t_*_s: latencies in seconds; time_step_s: the chip's time step (None = asynchronous).
        board: chips on the board, (rows, cols).
        core_neurons, core_synapses: per-core overrides (length = cores per chip) or None.
        sources: field name -> citation (REFERENCES.md §C) or "assumption: ...".
        assumptions: the fields whose value nobody published.
    """

    name: str
    mesh: tuple[int, int]
    cores_per_router: int
    neurons_per_core: int
    synaptic_memory_bits: int
    weight_bits: int
    fan_in: int | None
    fan_out: int | None
    e_synop_j: float
    e_neuron_active_j: float
    e_neuron_idle_j: float
    e_spike_j: float
    e_hop_ew_j: float
    e_hop_ns_j: float
    e_offchip_j: float
    static_w: float
    t_synop_s: float
    t_neuron_s: float
    t_hop_ew_s: float
    t_hop_ns_s: float
    t_offchip_s: float
    time_step_s: float | None = None
    max_dest_cores: int | None = None
    board: tuple[int, int] = (1, 1)
    core_neurons: tuple[int, ...] | None = None
    core_synapses: tuple[int, ...] | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=True)
    assumptions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for key in ("mesh", "board"):
            val = tuple(getattr(self, key))
            if len(val) != 2 or any(int(v) != v or v < 1 for v in val):
                raise ValueError(f"{key}={val!r} must be two positive ints, e.g. (8, 4)")
            object.__setattr__(self, key, (int(val[0]), int(val[1])))
        for key in ("cores_per_router", "neurons_per_core", "synaptic_memory_bits", "weight_bits"):
            val = getattr(self, key)
            if not isinstance(val, (int, np.integer)) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{key}={val!r} must be a positive int; pass e.g. {key}=1")
        if self.cores > MAX_CORES:
            raise ValueError(
                f"{self.name}: a board of {self.chips:,} chip(s) x {self.cores_per_chip:,} cores "
                f"= {self.cores:,} cores exceeds the {MAX_CORES:,} cores hwmaps models; pass fewer "
                f"chips (at most {max(1, MAX_CORES // self.cores_per_chip):,})"
            )
        if self.synaptic_memory_bits < self.weight_bits:
            raise ValueError(
                f"synaptic_memory_bits={self.synaptic_memory_bits} holds no weight of "
                f"weight_bits={self.weight_bits}; pass synaptic_memory_bits >= weight_bits"
            )
        for key in ("fan_in", "fan_out", "max_dest_cores"):
            val = getattr(self, key)
            if val is not None and (not isinstance(val, (int, np.integer)) or val < 1):
                raise ValueError(f"{key}={val!r} must be a positive int or None (unlimited)")
        for key in _ENERGY_TIME:
            val = getattr(self, key)
            if not isinstance(val, (int, float)) or not math.isfinite(val) or val < 0:
                raise ValueError(f"{key}={val!r} must be a finite number >= 0")
        if self.time_step_s is not None and not self.time_step_s > 0:
            raise ValueError(f"time_step_s={self.time_step_s!r} must be > 0 or None")
        for key in ("core_neurons", "core_synapses"):
            val = getattr(self, key)
            if val is None:
                continue
            val = tuple(int(v) for v in val)
            if len(val) != self.cores_per_chip or min(val) < 1:
                raise ValueError(
                    f"{key} has {len(val)} entries (min {min(val, default=0)}); it needs "
                    f"{self.cores_per_chip} positive ints, one per core of a chip"
                )
            object.__setattr__(self, key, val)
        object.__setattr__(self, "sources", dict(self.sources))
        object.__setattr__(self, "assumptions", tuple(self.assumptions))

    # ----------------------------------------------------------------- geometry
    @property
    def chips(self) -> int:
        """Chips on the board."""
        return self.board[0] * self.board[1]

    @property
    def cores_per_chip(self) -> int:
        """Cores on one chip: mesh rows × mesh cols × cores per router."""
        return self.mesh[0] * self.mesh[1] * self.cores_per_router

    @property
    def cores(self) -> int:
        """Cores on the whole board."""
        return self.chips * self.cores_per_chip

    @property
    def synapses_per_core(self) -> int:
        """Synapses per core: synaptic_memory_bits // weight_bits."""
        return self.synaptic_memory_bits // self.weight_bits

    def capacities(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-core neuron and synapse capacity over the board. Shape: (cores,), (cores,)."""
        n = np.full(self.cores_per_chip, self.neurons_per_core, dtype=np.int64)
        s = np.full(self.cores_per_chip, self.synapses_per_core, dtype=np.int64)
        if self.core_neurons is not None:
            n = np.asarray(self.core_neurons, dtype=np.int64)
        if self.core_synapses is not None:
            s = np.asarray(self.core_synapses, dtype=np.int64)
        return np.tile(n, self.chips), np.tile(s, self.chips)

    def coords(self) -> np.ndarray:
        """Global router coordinates (y, x) and chip id of every core. Shape: (cores, 3)."""
        ids = np.arange(self.cores)
        chip, local = np.divmod(ids, self.cores_per_chip)
        router = local // self.cores_per_router
        ry, rx = np.divmod(router, self.mesh[1])
        cy, cx = np.divmod(chip, self.board[1])
        return np.stack([cy * self.mesh[0] + ry, cx * self.mesh[1] + rx, chip], axis=1)

    # ----------------------------------------------------------------- io
    def to_dict(self) -> dict:
        """JSON-ready dict of every field."""
        out = dataclasses.asdict(self)
        for key in ("mesh", "board", "core_neurons", "core_synapses", "assumptions"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: dict) -> ChipSpec:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        if not isinstance(data, dict):
            raise TypeError(f"chip data must be a dict, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown ChipSpec keys {unknown}; known: {sorted(names)}")
        kw = dict(data)
        for key in ("mesh", "board", "core_neurons", "core_synapses", "assumptions"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        return cls(**kw)
