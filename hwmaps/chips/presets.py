"""Chip presets, built from ``chips.json`` (the one table of chip constants, with sources).

``chips.json`` sits next to this file. braingate's chip energy (``braingate.energy.chips``)
reads the same file by path, so both packages price a chip's events with the same numbers
without either importing the other. Every value cites REFERENCES.md §C or is flagged as an
assumption in the table's ``sources``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from hwmaps.chips.spec import MAX_CORES, PHYSICAL_FIELDS, ChipSpec

#: The table of chip constants shared with braingate (see module docstring).
TABLE_PATH = Path(__file__).with_name("chips.json")


@functools.cache
def table() -> dict:
    """The parsed ``chips.json``: ``{"about": str, "chips": {name: {"summary", "values",
    "sources"}}}``."""
    return json.loads(TABLE_PATH.read_text(encoding="utf-8"))


def _finish(name: str, values: dict, sources: dict[str, str]) -> ChipSpec:
    """Build a ChipSpec; fields whose source starts with 'assumption' are listed as such."""
    missing = [f for f in PHYSICAL_FIELDS if f not in sources]
    if missing:  # a programming error in the table, not user input
        raise RuntimeError(f"preset {name} lacks sources for {missing}")
    assumed = tuple(k for k, v in sources.items() if v.startswith("assumption"))
    return ChipSpec(name=name, **values, sources=dict(sources), assumptions=assumed)


def _from_table(name: str) -> ChipSpec:
    row = table()["chips"][name]
    values = dict(row["values"])
    for key in ("mesh", "core_neurons", "core_synapses"):
        if values.get(key) is not None:
            values[key] = tuple(values[key])
    return _finish(name, values, row["sources"])


def loihi() -> ChipSpec:
    """Intel Loihi (one chip): 128 neurocores, 4 per router tile on an 8×4 mesh."""
    return _from_table("loihi")


def loihi2() -> ChipSpec:
    """Intel Loihi 2: 128 neurocores, up to 8,192 neurons each; energies are assumptions."""
    return _from_table("loihi2")


def truenorth() -> ChipSpec:
    """IBM TrueNorth: 4,096 cores on a 64×64 mesh, 256 neurons × 256 axons, binary synapses."""
    return _from_table("truenorth")


def spinnaker() -> ChipSpec:
    """SpiNNaker 1, one chip of 18 ARM cores behind one router; pass chips=48 for a SpiNN-5."""
    return _from_table("spinnaker")


def speck() -> ChipSpec:
    """SynSense Speck / DYNAP-CNN: 9 heterogeneous cores, ≤ 2 destinations per core."""
    return _from_table("speck")


def generic(
    cores: int = 1024,
    neurons_per_core: int = 256,
    synapses_per_core: int = 16384,
    cores_per_router: int = 1,
) -> ChipSpec:
    """A parametrised square-ish mesh chip with Loihi-like per-event costs (all assumptions).

    Args:
        cores: cores on the chip (at most ``MAX_CORES``); the mesh is the most square
            factorisation of ``cores / cores_per_router``.
        neurons_per_core, synapses_per_core: capacities (8-bit weights).
        cores_per_router: cores sharing a router.
    """
    for key, val in (("cores", cores), ("neurons_per_core", neurons_per_core),
                     ("synapses_per_core", synapses_per_core),
                     ("cores_per_router", cores_per_router)):  # fmt: skip
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{key}={val!r} must be a positive int")
    if cores > MAX_CORES:
        raise ValueError(
            f"cores={cores:,} exceeds the {MAX_CORES:,} cores hwmaps models on one "
            f"generic chip; pass cores<={MAX_CORES}"
        )
    if cores % cores_per_router:
        raise ValueError(f"cores={cores} is not a multiple of cores_per_router={cores_per_router}")
    routers = cores // cores_per_router
    rows = max(d for d in range(1, int(routers**0.5) + 1) if routers % d == 0)
    base = _from_table(table()["chips"]["generic"]["event_values_from"])
    spec = {k: getattr(base, k) for k in PHYSICAL_FIELDS}
    spec.update(
        mesh=(rows, routers // rows), cores_per_router=cores_per_router,
        neurons_per_core=neurons_per_core, synaptic_memory_bits=synapses_per_core * 8,
        weight_bits=8, fan_in=None, fan_out=None, max_dest_cores=None,
    )  # fmt: skip
    src = {k: f"assumption: {base.name} value reused ({base.sources[k]})" for k in PHYSICAL_FIELDS}
    for key in ("mesh", "cores_per_router", "neurons_per_core", "synaptic_memory_bits"):
        src[key] = "assumption: parameter of the generic chip"
    src.update(
        weight_bits="assumption: 8-bit weights",
        fan_in="assumption: unlimited",
        fan_out="assumption: unlimited",
        max_dest_cores="assumption: unlimited",
        e_offchip_j=base.sources["e_offchip_j"],
        t_offchip_s=base.sources["t_offchip_s"],
    )
    return _finish("generic", spec, src)
