"""Traffic-oblivious baselines: ``sequential`` (Lava/PACMAN-like) and ``first_fit`` (sinabs-like).

REFERENCES.md §D: Lava's open mapper uses consecutive core ids, PACMAN graph order; sinabs takes
any feasible core. Tiles are as large as a core allows (a process is split into as few cores as
needed).
"""

from __future__ import annotations

import numpy as np

from hwmaps.chips.spec import ChipSpec
from hwmaps.hypergraph import build
from hwmaps.ir import Network
from hwmaps.methods import register
from hwmaps.partition import first_fit as _first_fit
from hwmaps.partition import make_tiles
from hwmaps.partition import sequential as _sequential


@register("sequential")
def sequential(network: Network, chip: ChipSpec, rng: np.random.Generator, progress=False):
    """Graph order onto consecutive core ids; each destination population starts a new core."""
    tiles = make_tiles(network, chip)
    return tiles, _sequential(tiles, build(network, tiles), network, chip)


@register("first_fit")
def first_fit(network: Network, chip: ChipSpec, rng: np.random.Generator, progress=False):
    """First-fit decreasing by synapses onto the lowest feasible core id."""
    tiles = make_tiles(network, chip)
    return tiles, _first_fit(tiles, build(network, tiles), network, chip)
