"""Energy of a ``braingate.sim`` Report, in joules per sample and per step.

Two kinds of cost model:

- a **chip** of the shared chip table (:mod:`braingate.energy.chips`, the numbers hwmaps maps
  with): synaptic operations, neuron updates (active / idle, as :func:`hwmaps.estimate` counts
  them) and one delivery per event; the chip's static power is reported apart. What this leaves
  out is the placement: hwmaps adds a delivery per extra destination core and the NoC hops.
- a **per-operation** :class:`~braingate.energy.costs.EnergyModel` (CPU / GPU presets): every
  counted operation priced at its per-op cost, no static term.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from braingate.energy.chips import ChipCosts, chip_costs, chip_names
from braingate.energy.costs import EnergyModel, energy_model

__all__ = ["ENERGY_KEYS", "report_energy"]

_PJ = 1e-12
#: The keys of ``report_energy(...)["per_sample"]`` and ``["per_step"]`` (joules).
ENERGY_KEYS = ("synops", "neurons", "spikes", "dynamic", "static", "total", "dense", "lowrank")


def _section(report: Any, key: str) -> Mapping[str, Any]:
    if isinstance(report, Mapping):
        return report.get(key, {}) or {}
    return getattr(report, key, {}) or {}


def _event_layers(layers: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Factored event layers in report order (those with per-unit latent counts)."""
    return [(n, d) for n, d in layers.items() if d.get("latent_unit_events")]


def _neuron_updates(layers: Mapping[str, Any], steps: float) -> tuple[float, float]:
    """(active, idle) neuron updates per sample: every rank unit and output unit of a factored
    layer updates once per step; a unit is active in a step with probability
    ``a = min(1, its events per step)`` (latent units: their events; outputs: the events of the
    next layer's inputs they feed; unknown: active), as ``hwmaps.estimate`` counts them."""
    ev = _event_layers(layers)
    if not ev:  # no per-unit counts: every rank and output unit counted active
        units = sum(float(d.get("out_features", 0)) + float(d.get("rank", 0))
                    for d in layers.values())  # fmt: skip
        return steps * units, 0.0
    active = idle = 0.0
    for i, (_, d) in enumerate(ev):
        rates = [float(e) / steps for e in d["latent_unit_events"]]
        m = int(d["out_features"])
        nxt = ev[i + 1][1] if i + 1 < len(ev) else None
        if nxt is not None and int(nxt["in_features"]) == m and nxt.get("input_unit_events"):
            rates += [float(e) / steps for e in nxt["input_unit_events"]]
        else:
            rates += [1.0] * m
        a = sum(min(1.0, r) for r in rates)
        active += steps * a
        idle += steps * (len(rates) - a)
    return active, idle


def _chip_terms(total, layers, steps: float, chip: ChipCosts) -> dict[str, float]:
    active, idle = _neuron_updates(layers, steps)
    events = float(total.get("input_events", 0.0)) + float(total.get("latent_events", 0.0))
    step_s = chip.time_step_s or 0.0  # asynchronous chip: no time step to charge static power to
    return {
        "synops": float(total.get("synops", 0.0)) * chip.e_synop_j,
        "neurons": active * chip.e_neuron_active_j + idle * chip.e_neuron_idle_j,
        "spikes": events * chip.e_spike_j,
        "static": chip.static_w * step_s * steps,
        # dense and dense low-rank execution on the chip: each MAC priced as one synop
        "dense": float(total.get("dense_synops", 0.0)) * chip.e_synop_j,
        "lowrank": float(total.get("lowrank_ops", 0.0)) * chip.e_synop_j,
    }


def _op_terms(total, layers, steps: float, em: EnergyModel) -> dict[str, float]:
    units = sum(float(d.get("out_features", 0)) + float(d.get("rank", 0)) for d in layers.values())
    events = float(total.get("input_events", 0.0)) + float(total.get("latent_events", 0.0))
    return {
        "synops": float(total.get("synops", 0.0)) * em.synop_pJ * _PJ,
        "neurons": steps * units * em.neuron_update_pJ * _PJ,
        "spikes": events * em.spike_pJ * _PJ,
        "static": 0.0,
        "dense": float(total.get("dense_synops", 0.0)) * em.mac_pJ * _PJ,
        "lowrank": float(total.get("lowrank_ops", 0.0)) * em.mac_pJ * _PJ,
    }


def report_energy(report: Any, model: str | EnergyModel = "loihi") -> dict[str, Any]:
    """Energy of a simulated run in joules, per sample (a whole stream) and per time step.

    .. math::
        E_{dyn} = \\text{synops}\\,e_{syn} + \\sum_{u,t} \\big(a_u e_{act} + (1 - a_u) e_{idle}\\big)
                  + (\\text{input\\_events} + \\text{latent\\_events})\\,e_{spk},
        \\qquad E_{static} = P_{static}\\,T\\,t_{step}

    for a chip (``a_u = min(1, events per step of unit u)`` over the rank and output units of
    every factored layer); for a per-op model every rank and output unit updates at
    ``neuron_update_pJ`` each step and there is no static term. ``dense`` prices
    ``dense_synops`` and ``lowrank`` prices ``lowrank_ops`` at one MAC each (a synop on a chip).

    Args:
        report: a ``braingate.sim.Report`` or its ``to_dict()`` (needs ``total``; ``layers``
            and ``meta["steps"]`` for the neuron and static terms, 0 without them).
        model: a chip name (:func:`braingate.energy.chips.chip_names`: the table hwmaps uses),
            an :class:`EnergyModel` or a per-op preset name (``energy_model_names()``).

    Returns:
        ``{"unit": "J", "model": name, "kind": "chip" | "per-op", "steps": T,
        "per_sample": {key: J}, "per_step": {key: J}}`` with the keys of ``ENERGY_KEYS``:
        ``synops``, ``neurons``, ``spikes``, ``dynamic`` (their sum), ``static``, ``total``
        (dynamic + static), ``dense``, ``lowrank``. ``per_step = per_sample / T``.
    """
    total = _section(report, "total")
    if "synops" not in total:
        raise ValueError(
            "report has no total['synops']; pass a braingate.sim Report or its to_dict()"
        )
    layers = _section(report, "layers")
    steps = float(_section(report, "meta").get("steps", 0) or 0)
    if isinstance(model, str) and model in chip_names():
        chip = chip_costs(model)
        terms, kind, name = _chip_terms(total, layers, steps, chip), "chip", chip.name
    else:
        try:
            em = energy_model(model)
        except (KeyError, ValueError) as err:
            raise ValueError(
                f"model={model!r} is neither a chip ({', '.join(chip_names())}) nor a per-op "
                f"energy model ({err})"
            ) from None
        terms, kind, name = _op_terms(total, layers, steps, em), "per-op", em.name
    terms["dynamic"] = terms["synops"] + terms["neurons"] + terms["spikes"]
    terms["total"] = terms["dynamic"] + terms["static"]
    per_sample = {k: terms[k] for k in ENERGY_KEYS}
    per_step = {k: (v / steps if steps else float("nan")) for k, v in per_sample.items()}
    return {"unit": "J", "model": name, "kind": kind, "steps": int(steps),
            "per_sample": per_sample, "per_step": per_step}  # fmt: skip
