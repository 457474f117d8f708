"""braingate model + simulate Report -> hwmaps Network (the only hwmaps file that uses torch)."""

from __future__ import annotations


def extract(model, report, name: str = "network"):
    """Build a Network of U/V factor blocks from a braingate model and its simulate Report."""
    raise NotImplementedError("filled in once braingate.sim exists")
