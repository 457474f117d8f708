"""Per-event costs of neuromorphic chips, read from the one table hwmaps maps with.

The table is ``hwmaps/chips/chips.json`` (every value with its source, REFERENCES.md §C).
braingate never imports hwmaps: :func:`table_path` finds the installed ``hwmaps`` package with
``importlib.util.find_spec`` (which locates a top-level package without running its code) and
reads the JSON file there. hwmaps builds its ``ChipSpec`` presets from the same file, so
``report_energy(report, "loihi")`` and ``hwmaps.estimate`` price events with the same numbers.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ChipCosts", "chip_costs", "chip_names", "table_path"]

_FIELDS = ("e_synop_j", "e_neuron_active_j", "e_neuron_idle_j", "e_spike_j", "static_w")


@dataclass(frozen=True)
class ChipCosts:
    """What one event costs on a chip (joules), its static power (W) and time step (s).

    Args:
        name: chip name (as in ``hwmaps.chips.names()``).
        e_synop_j: one synaptic operation.
        e_neuron_active_j, e_neuron_idle_j: one neuron (accumulator) update per step, for a
            unit that received an event in the step and for one that did not.
        e_spike_j: delivering one event to a core.
        static_w: static power of one chip.
        time_step_s: the chip's time step; None for an asynchronous chip.
        sources: field -> citation or "assumption: ...".
    """

    name: str
    e_synop_j: float
    e_neuron_active_j: float
    e_neuron_idle_j: float
    e_spike_j: float
    static_w: float
    time_step_s: float | None
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in _FIELDS:
            v = getattr(self, key)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"chip {self.name!r}: {key}={v!r} must be a finite number >= 0")


def table_path() -> Path:
    """Path of ``hwmaps/chips/chips.json`` in the installed hwmaps package (not imported)."""
    spec = importlib.util.find_spec("hwmaps")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the chip table ships with the hwmaps package of this distribution, which is not "
            "installed; reinstall braingate (pip install -e .)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "chips" / "chips.json"
    if not path.is_file():
        raise ImportError(f"chip table {path} is missing; reinstall braingate (pip install -e .)")
    return path


@functools.cache
def _table() -> dict:
    return json.loads(table_path().read_text(encoding="utf-8"))["chips"]


def chip_names() -> list[str]:
    """Names of the chips in the table, sorted."""
    return sorted(_table())


def chip_costs(name: str) -> ChipCosts:
    """The per-event costs of chip ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    chips = _table()
    if not isinstance(name, str) or name not in chips:
        raise ValueError(f"unknown chip {name!r}; known: {', '.join(chip_names())}")
    row = chips[name]
    while "values" not in row:  # a chip that reuses another's per-event values (generic)
        base = row["event_values_from"]
        row = {**chips[base], "sources": {k: f"assumption: {base} value reused ({v})"
                                          for k, v in chips[base]["sources"].items()}}  # fmt: skip
    vals = row["values"]
    keys = (*_FIELDS, "time_step_s")
    return ChipCosts(name, *(vals[k] for k in _FIELDS), vals["time_step_s"],
                     {k: row["sources"][k] for k in keys})  # fmt: skip
