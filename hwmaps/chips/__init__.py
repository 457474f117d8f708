"""Chip specs: ``names()`` lists the presets, ``get(name, **overrides)`` builds one.

>>> from hwmaps import chips
>>> chips.get("loihi").neurons_per_core
1024
>>> chips.get("generic", cores=64).cores
64
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from hwmaps._registry import Registry
from hwmaps.chips import presets
from hwmaps.chips.spec import MAX_CORES, PHYSICAL_FIELDS, ChipSpec

REGISTRY: Registry[Callable[..., ChipSpec]] = Registry("chip")
for _name in ("loihi", "loihi2", "truenorth", "spinnaker", "speck", "generic"):
    REGISTRY.register(_name)(getattr(presets, _name))

_FIELDS = {f.name for f in dataclasses.fields(ChipSpec)} - {"name", "sources", "assumptions"}


def names() -> list[str]:
    """Names of the registered chip presets."""
    return REGISTRY.names()


def register(name: str) -> Callable:
    """Decorator registering a ``() -> ChipSpec`` factory under ``name``."""
    return REGISTRY.register(name)


def _board(chips: int) -> tuple[int, int]:
    """Most square (rows, cols) grid holding exactly ``chips`` chips."""
    if not isinstance(chips, int) or isinstance(chips, bool) or chips < 1:
        raise ValueError(f"chips={chips!r} must be a positive int, e.g. chips=4")
    if chips > MAX_CORES:  # no board of more chips than the core bound; keeps the search short
        raise ValueError(f"chips={chips:,} exceeds the {MAX_CORES:,} cores hwmaps models")
    rows = max(d for d in range(1, math.isqrt(chips) + 1) if chips % d == 0)
    return rows, chips // rows


def get(name: str, **overrides) -> ChipSpec:
    """Build the preset ``name`` with ``overrides`` applied.

    Overrides are ChipSpec fields (``e_hop_ew_j=2e-12``), ``chips=N`` for a board of N chips
    (most square grid; or ``board=(r, c)``), or factory parameters (``generic``: ``cores``,
    ``neurons_per_core``, ``synapses_per_core``, ``cores_per_router``). An overridden field's
    source becomes "user override". Invalid values raise ValueError.

    Args:
        name: one of :func:`names`.
        **overrides: see above.

    Returns:
        The ChipSpec.
    """
    factory = REGISTRY.get(name)
    over = dict(overrides)
    if "chips" in over:
        if "board" in over:
            raise ValueError("pass either chips=N or board=(rows, cols), not both")
        over["board"] = _board(over.pop("chips"))
    fields = {k: over.pop(k) for k in list(over) if k in _FIELDS}
    try:
        spec = factory(**over)
    except TypeError as err:
        raise ValueError(
            f"unknown override(s) {sorted(over)} for chip {name!r}: {err}; "
            f"ChipSpec fields: {sorted(_FIELDS)}"
        ) from None
    if fields:
        sources = dict(spec.sources)
        sources.update({k: "user override" for k in fields if k in PHYSICAL_FIELDS})
        assumed = tuple(a for a in spec.assumptions if a not in fields)
        spec = dataclasses.replace(spec, **fields, sources=sources, assumptions=assumed)
    return spec


__all__ = ["MAX_CORES", "PHYSICAL_FIELDS", "REGISTRY", "ChipSpec", "get", "names", "register"]
