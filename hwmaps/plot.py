"""matplotlib figures (imported inside the functions): utilisation, link traffic, energy.

The maps are cropped to the routers in use (plus a margin of one), with the mesh coordinates on
the axes, so a few used cores of a 64×64 TrueNorth are not a dot in a corner. The energy figure
shows the dynamic terms (what the mapping changes) on a linear axis and static power apart.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from hwmaps.estimate import EnergyReport, placement_link_loads
from hwmaps.ir import Placement
from hwmaps.report import DYNAMIC


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    """Save atomically (temporary file, then ``os.replace``) and close the figure."""
    plt, path = _plt(), Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        plt.close(fig)
    return path


def _size(wid: int, hgt: int) -> tuple[float, float]:
    """Figure size for a map of ``wid`` x ``hgt`` routers (readable when small, capped)."""
    return min(10.0, max(5.0, 2.5 + 0.5 * wid)), min(10.0, max(3.8, 2.0 + 0.5 * hgt))


def _integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _window(placement: Placement, points=()) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), inclusive router rows/cols around the used cores and ``points``."""
    chip = placement.chip
    xy = chip.coords()[np.unique(placement.cores), :2]
    ys = [*xy[:, 0].tolist(), *(p[0] for p in points)]
    xs = [*xy[:, 1].tolist(), *(p[1] for p in points)]
    h, w = chip.board[0] * chip.mesh[0], chip.board[1] * chip.mesh[1]
    return (
        max(0, min(ys) - 1),
        min(h - 1, max(ys) + 1),
        max(0, min(xs) - 1),
        min(w - 1, max(xs) + 1),
    )


def _crop_note(placement: Placement, win) -> str:
    chip = placement.chip
    h, w = chip.board[0] * chip.mesh[0], chip.board[1] * chip.mesh[1]
    y0, y1, x0, x1 = win
    if (y1 - y0 + 1, x1 - x0 + 1) == (h, w):
        return f"whole {h}x{w} mesh"
    return f"routers {y0}-{y1} x {x0}-{x1} of the {h}x{w} mesh"


def utilisation(placement: Placement, path: str | Path) -> Path:
    """Heat map of synapse utilisation per router (max over its cores), cropped to use."""
    plt = _plt()
    chip = placement.chip
    cap = chip.capacities()[1]
    xy = chip.coords()
    y0, y1, x0, x1 = win = _window(placement)
    grid = np.full((y1 - y0 + 1, x1 - x0 + 1), np.nan)
    for core, load in placement.core_loads().items():
        y, x = xy[core, 0] - y0, xy[core, 1] - x0
        grid[y, x] = max(np.nan_to_num(grid[y, x]), load["synapses"] / cap[core])
    hgt, wid = grid.shape
    fig, ax = plt.subplots(figsize=_size(wid, hgt), layout="constrained")
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1,
                   extent=(x0 - 0.5, x1 + 0.5, y1 + 0.5, y0 - 0.5))  # fmt: skip
    if grid.size <= 144:
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(x0 + j, y0 + i, f"{v:.0%}", ha="center", va="center", fontsize=7,
                        color="w" if v < 0.6 else "k")  # fmt: skip
    fig.colorbar(im, ax=ax, label="synapse utilisation (blank: unused)", shrink=0.8)
    _integer_ticks(ax)
    ax.set(xlabel="router column", ylabel="router row",
           title=f"{placement.method!r} placement on {chip.name}: {len(set(placement.cores))} cores used\n"
                 f"({_crop_note(placement, win)})")  # fmt: skip
    return _save(fig, path)


def links(placement: Placement, path: str | Path) -> Path:
    """Link traffic: each used router link coloured and sized by events per step, cropped."""
    plt = _plt()
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize

    loads = placement_link_loads(placement)
    ends = [p for link in loads for p in link]
    y0, y1, x0, x1 = win = _window(placement, ends)
    wid, hgt = x1 - x0 + 1, y1 - y0 + 1
    fig, ax = plt.subplots(figsize=_size(wid, hgt), layout="constrained")
    gy, gx = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
    ax.scatter(gx.ravel(), gy.ravel(), s=8, c="0.8", zorder=1, label="router")
    xy = placement.chip.coords()[np.unique(placement.cores), :2]
    ax.scatter(xy[:, 1], xy[:, 0], s=60, facecolors="none", edgecolors="k", zorder=3,
               label="router with used cores")  # fmt: skip
    top = max(loads.values(), default=0.0)
    if loads:
        segs = [[(xa, ya), (xb, yb)] for (ya, xa), (yb, xb) in loads]
        vals = np.array(list(loads.values()))
        lc = LineCollection(segs, cmap="plasma", norm=Normalize(0, top), zorder=2,
                            linewidths=1 + 5 * vals / top)  # fmt: skip
        lc.set_array(vals)
        ax.add_collection(lc)
        fig.colorbar(lc, ax=ax, label="events per step on the link", shrink=0.8)
    ax.set_xlim(x0 - 0.5, x1 + 0.5)
    ax.set_ylim(y1 + 0.5, y0 - 0.5)
    ax.set_aspect("equal")
    _integer_ticks(ax)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=7, ncol=2)
    ax.set(xlabel="router column", ylabel="router row",
           title=f"link traffic, {placement.method!r} placement on {placement.chip.name} "
                 f"(max {top:.3g} events/step)\n({_crop_note(placement, win)})")  # fmt: skip
    return _save(fig, path)


def breakdown(reports: dict[str, EnergyReport], path: str | Path) -> Path:
    """Per method: dynamic energy per step, stacked by term on a linear axis (left); the NoC
    term alone, where mappings differ (right); static energy per step written apart."""
    plt = _plt()
    names = list(reports)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(4 + 2.2 * len(names), 4.2), layout="constrained")
    bottom = np.zeros(len(names))
    for i, k in enumerate(DYNAMIC):
        vals = np.array([r.breakdown[k] * 1e12 for r in reports.values()])
        ax.bar(names, vals, bottom=bottom, label=k, color=f"C{i}")
        bottom += vals
    ax.set(ylabel="dynamic energy per step (pJ)", title="dynamic energy per step (linear)")
    noc = [r.breakdown["noc"] * 1e12 for r in reports.values()]
    bx.bar(names, noc, color=f"C{DYNAMIC.index('noc')}")
    for x, v in enumerate(noc):
        bx.annotate(f"{v:.3g}", (x, v), ha="center", va="bottom", fontsize=8)
    bx.set(ylabel="NoC energy per step (pJ)", title="NoC term (what the mapping changes)")
    for a in (ax, bx):
        a.tick_params(axis="x", rotation=20)
    static = sorted({f"{r.breakdown['static'] * 1e12:.3g}" for r in reports.values()})
    chip = next(iter(reports.values())).chip if reports else ""
    fig.suptitle(f"{chip}: static energy per step (not in the bars): {', '.join(static)} pJ")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    return _save(fig, path)
