"""Mapping methods: one registry; each method maps (network, chip, rng) -> (tiles, core ids).

Add a method with ``@register("name")`` on a function
``fn(network, chip, rng, progress) -> (list[Tile], np.ndarray core_of)``.
"""

from __future__ import annotations

from hwmaps._registry import Registry

REGISTRY: Registry = Registry("mapping method")
register = REGISTRY.register


def names() -> list[str]:
    """Registered mapping methods."""
    return REGISTRY.names()


# Importing the modules registers the methods (order = listing order).
from hwmaps.methods import baselines, metis_anneal, traffic  # noqa: E402, F401

__all__ = ["REGISTRY", "names", "register"]
