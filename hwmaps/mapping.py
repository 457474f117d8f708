"""``map_network``: run a registered mapping method and check the result."""

from __future__ import annotations

import time

import numpy as np

from hwmaps import methods
from hwmaps.chips.spec import ChipSpec
from hwmaps.feasibility import board_that_fits
from hwmaps.hypergraph import build
from hwmaps.ir import Network, Placement
from hwmaps.partition import CapacityError, violations


def map_network(
    net: Network, chip: ChipSpec, method: str = "traffic", seed: int = 0, progress: bool = False
) -> Placement:
    """Map the factor blocks of ``net`` onto the cores of ``chip``.

    Blocks too large for a core are tiled; no core exceeds its neurons, synapses, fan-in,
    fan-out or destination limits; every synapse is placed exactly once.

    Args:
        net: the network.
        chip: the chip or board.
        method: one of :func:`hwmaps.methods.names` ("sequential", "first_fit",
            "metis_anneal", "traffic").
        seed: seed of the method's random choices.
        progress: show a progress bar (tqdm) when the method supports it.

    Returns:
        The Placement (``meta["map_time_s"]`` holds the wall time).

    Raises:
        ValueError: unknown method, bad arguments; CapacityError (a ValueError) when the
            network does not fit: the message states the smallest board that holds it
            (:func:`hwmaps.feasibility.board_that_fits`) or why none does.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a hwmaps.ir.Network, got {type(net).__name__}")
    if not isinstance(chip, ChipSpec):
        raise TypeError(
            f"chip must be a ChipSpec (hwmaps.chips.get(name)), got {type(chip).__name__}"
        )
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed={seed!r} must be an int")
    fn = methods.REGISTRY.get(method)
    start = time.perf_counter()
    try:
        tiles, core_of = fn(net, chip, np.random.default_rng(seed), progress)
    except CapacityError as err:
        raise CapacityError(f"{err}; {board_that_fits(net, chip).hint(chip)}") from None
    elapsed = time.perf_counter() - start
    bad = violations(build(net, tiles), np.asarray(core_of), chip)
    if bad:
        raise CapacityError(
            f"method {method!r} cannot satisfy the limits of {chip.name}: {bad[0]}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
            + f"; {board_that_fits(net, chip).hint(chip)}"
        )
    return Placement(net, chip, tuple(tiles), tuple(int(c) for c in core_of), method, int(seed),
                     {"map_time_s": elapsed})  # fmt: skip
