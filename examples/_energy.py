"""Energy estimates for the comparison (examples/02), all in joules per sample (one test stream).

- Chips (Loihi, TrueNorth): the event network's U/V factor blocks placed by hwmaps with the
  measured traffic (``hwmaps.extract`` -> ``map_network(method="traffic")`` -> ``estimate``),
  for the event run and for the same network run densely (every input and rank unit sends each
  step). hwmaps gives joules per step; times T steps is per sample. Static power is kept apart
  from the dynamic terms (synops, neurons, spikes, NoC).
- CPU / GPU: ``bg.PerfEstimator`` (roofline FLOPs + bytes; its seed API speaks mJ, converted
  here) for the dense full-rank and low-rank paths, and ``report_energy`` with per-op costs for
  the event run.
"""

from __future__ import annotations

import copy

import torch

import braingate as bg
import hwmaps
from braingate.energy import PerfEstimator, report_energy

CHIPS = ("loihi", "truenorth")
#: CPU: Horowitz 45 nm fp32 per-op costs (REFERENCES §C); GPU: H100 fp32 datasheet peak / TDP.
DEVICES = {"cpu": "horowitz45_fp32", "gpu": "h100_fp32"}
DYNAMIC = ("synops", "neurons", "spikes", "noc")


def _layers(model):
    return [m for m in model.modules() if isinstance(m, (torch.nn.Linear, bg.EventLinear))]


def on_chips(net, report, dense_report) -> dict:
    """Per chip and traffic (event / dense low-rank): J per sample, dynamic terms and static."""
    steps = report.meta["steps"]
    out = {}
    for chip_name in CHIPS:
        chip, row = hwmaps.chips.get(chip_name), {}
        for label, rep in (("event", report), ("dense low-rank", dense_report)):
            try:
                placement = hwmaps.map_network(hwmaps.extract(net, rep), chip, method="traffic")
            except hwmaps.CapacityError as err:  # does not fit this chip: say so, keep going
                row[label] = {"error": str(err)}
                continue
            er = hwmaps.estimate(placement)
            per_sample = {k: v * steps for k, v in er.breakdown.items()}
            row[label] = {"J_per_sample": per_sample,
                          "dynamic_J_per_sample": sum(per_sample[k] for k in DYNAMIC),
                          "static_J_per_sample": per_sample["static"],
                          "J_per_step": dict(er.breakdown), "cores": er.cores_used,
                          "latency_s_per_step": er.latency_s_per_step}  # fmt: skip
        # braingate's placement-free estimate from the same chip table (no NoC, one delivery
        # per event): a floor under hwmaps' dynamic energy
        row["braingate_J_per_sample"] = report_energy(report, chip_name)["per_sample"]
        out[chip_name] = row
    return out


def on_devices(net, report, dense) -> dict:
    """J per sample on CPU and GPU for dense full-rank, dense low-rank and event execution."""
    steps = report.meta["steps"]
    out = {}
    for dev, model in DEVICES.items():
        pe = PerfEstimator({"energy_model": model})
        full = sum(pe.estimate_dense((m.in_features, m.out_features))["energy_mJ"]
                   for m in _layers(dense))  # fmt: skip
        low = sum(pe.estimate((m.in_features, m.out_features), m.rank)["energy_mJ"]
                  for m in _layers(net))  # fmt: skip
        ev = report_energy(report, model)["per_sample"]
        out[dev] = {"energy_model": model, "dense full-rank": full * 1e-3 * steps,
                    "dense low-rank": low * 1e-3 * steps, "event-driven": ev["dynamic"],
                    "event breakdown": {k: ev[k] for k in ("synops", "neurons", "spikes")}}  # fmt: skip
    return out


def estimate_all(net, report, dense) -> dict:
    """Both estimates, in joules per sample (one whole test stream of ``steps`` steps)."""
    return {"unit": "J per sample (one test stream); per step = per sample / steps",
            "steps": report.meta["steps"], "devices": on_devices(net, report, dense),
            "chips": on_chips(net, report, dense_report(report))}  # fmt: skip


def dense_report(report):
    """A Report of the same network run densely: every input and rank unit sends each step."""
    d = bg.Report.from_dict(copy.deepcopy(report.to_dict()))
    T = report.meta["steps"]
    for lay in d.layers.values():
        if lay.get("latent_unit_events"):
            lay["input_unit_events"] = [float(T)] * lay["in_features"]
            lay["latent_unit_events"] = [float(T)] * lay["rank"]
    return d
