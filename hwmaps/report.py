"""JSON and markdown reports of placements and their energy estimates (J per step and sample)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from hwmaps.estimate import EnergyReport
from hwmaps.ir import Placement

KEYS = ("synops", "neurons", "spikes", "noc", "static")
DYNAMIC = ("synops", "neurons", "spikes", "noc")


def markdown(reports: dict[str, EnergyReport], title: str = "hwmaps",
             not_mapped: dict[str, float | None] | None = None) -> str:  # fmt: skip
    """A markdown table: one row per method; energies in pJ **per time step** (dynamic terms,
    their sum, static apart), and J **per sample** when the run's length T is known.

    Args:
        reports: {method: EnergyReport}.
        title: heading.
        not_mapped: layers of the network left dense (not factored, so not mapped):
            {name: MACs per sample or None}; listed under the table as outside the estimate.
    """
    steps = next(iter(reports.values())).extra.get("steps") if reports else None
    per_sample = f" | dynamic J / sample (T={steps}) | total J / sample" if steps else ""
    head = ("| method | cores | " + " | ".join(f"{k} pJ/step" for k in DYNAMIC)
            + " | dynamic pJ/step | static pJ/step | total pJ/step" + per_sample
            + " | latency µs/step | mean hops | map s |")  # fmt: skip
    lines = [f"## {title}", "",
             "Energy per time step (pJ); static = the chips' idle power over a step, shown "
             "apart from the dynamic terms." + (f" Per sample = per step x T = {steps} steps."
                                                if steps else ""), "",
             head, "|" + "---|" * (head.count("|") - 1)]  # fmt: skip
    for m, r in reports.items():
        t = r.extra.get("map_time_s")
        cells = " | ".join(f"{r.breakdown[k] * 1e12:.3g}" for k in DYNAMIC)
        ps = r.per_sample_j()
        sample = f" | {ps['dynamic']:.3g} | {ps['total']:.3g}" if steps and ps else ""
        lines.append(
            f"| {m} | {r.cores_used} | {cells} | {r.dynamic_j * 1e12:.4g} | "
            f"{r.breakdown['static'] * 1e12:.4g} | {r.total_j * 1e12:.4g}{sample} | "
            f"{r.latency_s_per_step * 1e6:.3g} | {r.hops['mean']:.2f} | "
            f"{'' if t is None else f'{t:.2f}'} |"
        )
    if not_mapped:
        items = ", ".join(
            f"{n} ({'?' if macs is None else f'{macs:,.0f}'} MACs per sample)"
            for n, macs in not_mapped.items()
        )
        lines += ["", f"**Not in this estimate:** layers left dense (not factored, not mapped): "
                  f"{items}. Their cost on the chip is not included above."]  # fmt: skip
    return "\n".join(lines) + "\n"


def not_mapped(meta: dict) -> dict[str, float | None]:
    """``{layer: MACs per sample or None}`` of the layers a Network's extraction left dense."""
    macs = meta.get("dense_macs_per_sample") or {}
    return {n: macs.get(n) for n in meta.get("dense") or ()}


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file, then ``os.replace``)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write(out_dir: str | Path, placements: dict[str, Placement],
          reports: dict[str, EnergyReport], title: str = "hwmaps",
          skipped: dict[str, float | None] | None = None) -> list[Path]:  # fmt: skip
    """Write ``placement_<method>.json``, ``energy.json`` and ``report.md`` into ``out_dir``.

    ``skipped``: layers left dense and not mapped (:func:`not_mapped`), recorded in
    ``energy.json`` (``"not_mapped"``) and listed in ``report.md``.

    Returns:
        The paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for m, p in placements.items():
        paths.append(write_text(out / f"placement_{m}.json", json.dumps(p.to_dict())))
    data = {m: r.to_dict() for m, r in reports.items()}
    if skipped:
        data["not_mapped"] = {n: {"macs_per_sample": v} for n, v in skipped.items()}
    paths.append(write_text(out / "energy.json", json.dumps(data, indent=1)))
    paths.append(write_text(out / "report.md", markdown(reports, title, skipped)))
    return paths
