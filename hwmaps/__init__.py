"""hwmaps: map braingate networks onto neuromorphic chips and estimate what they cost there.

>>> import hwmaps
>>> chip = hwmaps.chips.get("loihi")
>>> sorted(hwmaps.methods.names())
['first_fit', 'metis_anneal', 'sequential', 'traffic']

Only :func:`extract` touches torch (imported when called).
"""

from hwmaps import chips, extract_conv, extract_rnn, methods  # noqa: F401 - register their layer kinds
from hwmaps.chips import ChipSpec
from hwmaps.estimate import EnergyReport, estimate, placement_link_loads
from hwmaps.extract import extract
from hwmaps.ir import FactorBlock, Network, Placement, Tile
from hwmaps.mapping import map_network
from hwmaps.partition import CapacityError
from hwmaps.route import xy_route

__all__ = [
    "CapacityError",
    "ChipSpec",
    "EnergyReport",
    "FactorBlock",
    "Network",
    "Placement",
    "Tile",
    "chips",
    "estimate",
    "extract",
    "map_network",
    "methods",
    "placement_link_loads",
    "xy_route",
]
