"""Energy estimates for the comparison: hwmaps on neuromorphic chips, per-op costs on CPU/GPU.

- hwmaps (Loihi, TrueNorth): the event network's U/V factor blocks placed on the chip with the
  measured traffic (``hwmaps.extract`` -> ``map_network`` -> ``estimate``), for the event run
  and for the same network run densely (every input and rank unit sends each step).
- CPU / GPU: ``bg.PerfEstimator`` (roofline FLOPs + bytes) for the dense full-rank and low-rank
  paths, and ``report_energy`` (per-op costs x counted events) for the event run.
"""

from __future__ import annotations

import copy

import torch

import braingate as bg
from braingate.energy import PerfEstimator, report_energy

CHIPS = ("loihi", "truenorth")
#: CPU: Horowitz 45 nm fp32 per-op costs (REFERENCES §C); GPU: H100 fp32 datasheet peak / TDP.
DEVICES = {"cpu": "horowitz45_fp32", "gpu": "h100_fp32"}


def _layers(model):
    return [m for m in model.modules() if isinstance(m, (torch.nn.Linear, bg.EventLinear))]


def on_chips(net, report, dense_report) -> dict:
    """J per sample (per-step energy x steps) on each chip, event vs dense-low-rank traffic."""
    try:
        import hwmaps
    except ImportError as e:  # pragma: no cover - hwmaps ships with braingate
        return {"error": f"TODO: hwmaps unavailable ({e})"}
    out = {}
    steps = report.meta["steps"]
    for chip_name in CHIPS:
        try:
            chip = hwmaps.chips.get(chip_name)
            row = {}
            for label, rep in (("event", report), ("dense low-rank", dense_report)):
                placement = hwmaps.map_network(hwmaps.extract(net, rep), chip, method="traffic")
                er = hwmaps.estimate(placement)
                row[label] = {"j_per_sample": er.total_j * steps,
                              "breakdown_j": {k: v * steps for k, v in er.breakdown.items()},
                              "cores": er.cores_used, "latency_s_per_step": er.latency_s_per_step}  # fmt: skip
            out[chip_name] = row
        except Exception as e:
            out[chip_name] = {"error": f"TODO: hwmaps failed: {type(e).__name__}: {e}"}
    return out


def on_devices(net, report, dense) -> dict:
    """mJ per sample on CPU and GPU for dense full-rank, dense low-rank and event execution."""
    steps = report.meta["steps"]
    out = {}
    for dev, model in DEVICES.items():
        pe = PerfEstimator({"energy_model": model})
        full = sum(pe.estimate_dense((m.in_features, m.out_features))["energy_mJ"]
                   for m in _layers(dense))  # fmt: skip
        low = sum(pe.estimate((m.in_features, m.out_features), m.rank)["energy_mJ"]
                  for m in _layers(net))  # fmt: skip
        ev = report_energy(report, model)
        out[dev] = {"energy_model": model, "dense full-rank": full * steps,
                    "dense low-rank": low * steps, "event-driven": ev["total_mJ"],
                    "event breakdown": {k: ev[k] for k in ("synops_mJ", "spikes_mJ", "neurons_mJ")}}  # fmt: skip
    return out


def estimate_all(net, report, dense, quick: bool = False) -> dict:
    """Both estimates; a failure of one is recorded as a TODO string, not raised."""
    xs_note = "per sample (a whole test stream)"
    _, dense_rep = _dense_report(net, report)
    return {"unit": xs_note, "devices_mJ": on_devices(net, report, dense),
            "chips_J": on_chips(net, report, dense_rep)}  # fmt: skip


def _dense_report(net, report):
    """A Report of the same network run densely: every input and rank unit sends each step."""
    d = bg.Report.from_dict(copy.deepcopy(report.to_dict()))
    T = report.meta["steps"]
    for lay in d.layers.values():
        lay["input_unit_events"] = [float(T)] * lay["in_features"]
        lay["latent_unit_events"] = [float(T)] * lay["rank"]
    return None, d
