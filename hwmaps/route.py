"""XY (dimension-order) routing on the board's router grid: hops, energies, link loads.

A packet from router (y0, x0) to (y1, x1) first travels along x (east-west) then along y
(north-south). Hops that cross a chip boundary use the chip-to-chip link (``e_offchip_j``,
``t_offchip_s``) instead of an on-chip hop. Cores behind the same router are 0 hops apart.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from hwmaps.chips.spec import ChipSpec

Link = tuple[tuple[int, int], tuple[int, int]]


class Geometry:
    """Router coordinates of a chip's cores, cached, with vectorised per-packet costs."""

    def __init__(self, chip: ChipSpec) -> None:
        self.chip = chip
        self.xy = chip.coords()

    def split(self, a, b):
        """On-chip x hops, on-chip y hops and chip crossings between cores ``a`` and ``b``."""
        a, b = np.asarray(a), np.asarray(b)
        ya, xa, yb, xb = self.xy[a, 0], self.xy[a, 1], self.xy[b, 0], self.xy[b, 1]
        my, mx = self.chip.mesh
        cx = np.abs(xa // mx - xb // mx)
        cy = np.abs(ya // my - yb // my)
        return np.abs(xa - xb) - cx, np.abs(ya - yb) - cy, cx + cy

    def hops(self, a, b) -> np.ndarray:
        """Router hops: |x_a - x_b| + |y_a - y_b|."""
        hx, hy, off = self.split(a, b)
        return hx + hy + off

    def energy(self, a, b) -> np.ndarray:
        """Joules per packet: h_x e_EW + h_y e_NS + h_off e_off."""
        c = self.chip
        hx, hy, off = self.split(a, b)
        return hx * c.e_hop_ew_j + hy * c.e_hop_ns_j + off * c.e_offchip_j

    def latency(self, a, b) -> np.ndarray:
        """Seconds per packet: h_x t_EW + h_y t_NS + h_off t_off."""
        c = self.chip
        hx, hy, off = self.split(a, b)
        return hx * c.t_hop_ew_s + hy * c.t_hop_ns_s + off * c.t_offchip_s


def hops(chip: ChipSpec, a, b) -> np.ndarray:
    """Router hops between cores ``a`` and ``b`` (broadcast arrays of core ids).

    .. math:: h = |x_a - x_b| + |y_a - y_b|
    """
    return Geometry(chip).hops(a, b)


def hop_energy(chip: ChipSpec, a, b) -> np.ndarray:
    """Energy in joules of one packet from core a to core b.

    .. math:: E = h_x e_{EW} + h_y e_{NS} + h_{off} e_{off}
    """
    return Geometry(chip).energy(a, b)


def hop_latency(chip: ChipSpec, a, b) -> np.ndarray:
    """Latency in seconds of one packet from core a to core b."""
    return Geometry(chip).latency(a, b)


def xy_route(chip: ChipSpec, a: int, b: int, xy: np.ndarray | None = None) -> list[Link]:
    """Directed router-to-router links of the XY route from core ``a`` to core ``b``.

    Returns:
        [((y, x), (y', x')), ...], consecutive and of length :func:`hops`.
    """
    xy = chip.coords() if xy is None else xy
    y, x = int(xy[a, 0]), int(xy[a, 1])
    y1, x1 = int(xy[b, 0]), int(xy[b, 1])
    path: list[Link] = []
    while x != x1:
        nx = x + (1 if x1 > x else -1)
        path.append(((y, x), (y, nx)))
        x = nx
    while y != y1:
        ny = y + (1 if y1 > y else -1)
        path.append(((y, x), (ny, x)))
        y = ny
    return path


def link_loads(chip: ChipSpec, traffic: np.ndarray, cores: np.ndarray) -> dict[Link, float]:
    """Events per step on every directed link.

    Args:
        chip: the chip.
        traffic: W[i, j] events per step from ``cores[i]`` to ``cores[j]``. Shape: (K, K).
        cores: core ids. Shape: (K,).

    Returns:
        {link: events per step}.
    """
    loads: dict[Link, float] = defaultdict(float)
    xy = chip.coords()
    for i, j in zip(*np.nonzero(traffic)):
        if cores[i] == cores[j]:
            continue
        for link in xy_route(chip, int(cores[i]), int(cores[j]), xy):
            loads[link] += float(traffic[i, j])
    return dict(loads)
