"""Which board would hold a network: the smallest number of chips, computed, not guessed.

A board of ``n`` chips (the most square grid, as ``chips.get(name, chips=n)`` builds it) holds a
network when the ``sequential`` packer places every tile and the result meets every per-core
limit (:func:`hwmaps.partition.violations`). The search starts at the capacity bound
``ceil(max(Σ neurons / neurons per chip, Σ synapses / synapses per chip))``, grows by doubling
until a board holds the network, then bisects down to the smallest that does. A violated
fan-out or destination limit is a property of the tiling, which a bigger board does not change:
the search stops there and says so.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from hwmaps.chips.spec import MAX_CORES, ChipSpec
from hwmaps.hypergraph import build
from hwmaps.ir import Network
from hwmaps.partition import CapacityError, make_tiles, sequential, violations


@dataclass(frozen=True)
class Fit:
    """The answer of :func:`board_that_fits`.

    Args:
        chips: smallest number of chips found to hold the network, or None when none does.
        lower_bound: chips needed by capacity alone (neurons and synapses).
        reason: why no board holds it (None when ``chips`` is set).
    """

    chips: int | None
    lower_bound: int
    reason: str | None = None

    def hint(self, chip: ChipSpec) -> str:
        """One sentence for an error message about ``chip``."""
        if self.chips is None:
            return f"no board of {chip.name} chips holds this network: {self.reason}"
        if self.chips <= chip.chips:
            return (
                f"a board of {self.chips} {chip.name} chip(s) holds it with the sequential "
                f"packer (this board has {chip.chips}); try method='sequential'"
            )
        return (
            f"it needs a board of {self.chips} {chip.name} chips (capacity bound "
            f"{self.lower_bound}; checked by sequential packing): pass "
            f"chips.get({chip.name!r}, chips={self.chips}) or --chips {self.chips}"
        )


def _board(chip: ChipSpec, n: int) -> ChipSpec:
    rows = max(d for d in range(1, math.isqrt(n) + 1) if n % d == 0)
    return dataclasses.replace(chip, board=(rows, n // rows))


def board_that_fits(network: Network, chip: ChipSpec) -> Fit:
    """The smallest board of ``chip``'s chips that holds ``network`` (module docstring).

    Args:
        network: the network.
        chip: the chip; its ``board`` is ignored (only one chip's cores count).

    Returns:
        a :class:`Fit`.
    """
    one = dataclasses.replace(chip, board=(1, 1))
    tiles = make_tiles(network, one)
    hg = build(network, tiles)
    cap_n, cap_s = one.capacities()
    need = max(hg.neurons.sum() / cap_n.sum(), hg.synapses.sum() / cap_s.sum())
    lower = max(1, math.ceil(need - 1e-9))
    most = MAX_CORES // one.cores_per_chip
    if lower > most:
        return Fit(None, lower, f"it needs at least {lower:,} chips by capacity alone, over "
                                f"the {MAX_CORES:,} cores hwmaps models")  # fmt: skip

    def holds(n: int) -> tuple[bool, str | None]:
        board = _board(one, n)
        try:
            core_of = sequential(tiles, hg, network, board)
        except CapacityError:
            return False, None
        bad = violations(hg, core_of, board)
        return not bad, (bad[0] if bad else None)

    lo, n = lower - 1, lower  # lo: largest size known not to hold it
    while True:
        ok, limit = holds(n)
        if ok:
            break
        if limit is not None:  # a per-core limit other than capacity: more chips do not help
            return Fit(None, lower, f"{limit} (a per-core limit that more chips do not lift; "
                                    "lower the rank, or the fan-out of the layer)")  # fmt: skip
        if n >= most:
            return Fit(None, lower, f"sequential packing does not fit {most:,} chips")
        lo, n = n, min(most, 2 * n)
    while n - lo > 1:  # bisect: lo does not hold it, n does
        mid = (lo + n) // 2
        if holds(mid)[0]:
            n = mid
        else:
            lo = mid
    return Fit(n, lower)
