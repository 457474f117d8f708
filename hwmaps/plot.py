"""matplotlib figures (imported inside the functions): utilisation, link traffic, energy."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hwmaps.estimate import EnergyReport, placement_link_loads
from hwmaps.ir import Placement
from hwmaps.report import KEYS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(chip) -> tuple[int, int]:
    return chip.board[0] * chip.mesh[0], chip.board[1] * chip.mesh[1]


def utilisation(placement: Placement, path: str | Path) -> Path:
    """Heat map of synapse utilisation per router on the mesh (max over its cores)."""
    plt = _plt()
    chip = placement.chip
    grid = np.zeros(_grid(chip))
    cap = chip.capacities()[1]
    xy = chip.coords()
    for core, load in placement.core_loads().items():
        y, x = xy[core, :2]
        grid[y, x] = max(grid[y, x], load["synapses"] / cap[core])
    fig, ax = plt.subplots(figsize=(5, 5 * grid.shape[0] / max(grid.shape[1], 1) + 0.5))
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="synapse utilisation")
    ax.set_title(f"{placement.method} on {chip.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def links(placement: Placement, path: str | Path) -> Path:
    """Link traffic: each used router link drawn with width and colour by events per step."""
    plt = _plt()
    loads = placement_link_loads(placement)
    h, w = _grid(placement.chip)
    fig, ax = plt.subplots(figsize=(5, 5 * h / max(w, 1) + 0.5))
    top = max(loads.values(), default=1.0)
    for ((y0, x0), (y1, x1)), v in loads.items():
        ax.plot([x0, x1], [y0, y1], color=plt.cm.plasma(v / top), lw=0.5 + 4 * v / top)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_title(f"link traffic (max {top:.3g} events/step)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def breakdown(reports: dict[str, EnergyReport], path: str | Path) -> Path:
    """Stacked bars of the energy breakdown (pJ per step) for each method."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(1.6 * len(reports) + 2, 4))
    bottom = np.zeros(len(reports))
    for k in KEYS:
        vals = np.array([r.breakdown[k] * 1e12 for r in reports.values()])
        ax.bar(list(reports), vals, bottom=bottom, label=k)
        bottom += vals
    ax.set_ylabel("energy per step (pJ)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
