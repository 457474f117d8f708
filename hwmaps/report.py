"""JSON and markdown reports of placements and their energy estimates."""

from __future__ import annotations

import json
from pathlib import Path

from hwmaps.estimate import EnergyReport
from hwmaps.ir import Placement

KEYS = ("synops", "neurons", "spikes", "noc", "static")


def markdown(reports: dict[str, EnergyReport], title: str = "hwmaps") -> str:
    """A markdown table: one row per method, energies in pJ per step, latency in µs.

    Args:
        reports: {method: EnergyReport}.
        title: heading.
    """
    head = ("| method | cores | total pJ | " + " | ".join(f"{k} pJ" for k in KEYS)
            + " | latency µs | mean hops | map s |")  # fmt: skip
    lines = [f"## {title}", "", head, "|" + "---|" * (head.count("|") - 1)]
    for m, r in reports.items():
        t = r.extra.get("map_time_s")
        cells = " | ".join(f"{r.breakdown[k] * 1e12:.3g}" for k in KEYS)
        lines.append(
            f"| {m} | {r.cores_used} | {r.total_j * 1e12:.4g} | {cells} | "
            f"{r.latency_s_per_step * 1e6:.3g} | {r.hops['mean']:.2f} | "
            f"{'' if t is None else f'{t:.2f}'} |"
        )
    return "\n".join(lines) + "\n"


def write(out_dir: str | Path, placements: dict[str, Placement],
          reports: dict[str, EnergyReport], title: str = "hwmaps") -> list[Path]:  # fmt: skip
    """Write ``placement_<method>.json``, ``energy.json`` and ``report.md`` into ``out_dir``.

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for m, p in placements.items():
        paths.append(out / f"placement_{m}.json")
        p.save(paths[-1])
    paths.append(out / "energy.json")
    paths[-1].write_text(json.dumps({m: r.to_dict() for m, r in reports.items()}, indent=1))
    paths.append(out / "report.md")
    paths[-1].write_text(markdown(reports, title))
    return paths
