"""Energy of a ``braingate.sim`` Report: event counts × per-operation costs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from braingate.energy.costs import EnergyModel, energy_model

__all__ = ["report_energy"]

_PJ_TO_MJ = 1e-9


def _section(report: Any, key: str) -> Mapping[str, Any]:
    if isinstance(report, Mapping):
        return report.get(key, {})
    return getattr(report, key, {}) or {}


def report_energy(report: Any, model: str | EnergyModel = "loihi") -> dict[str, float]:
    """Per-sample energy (mJ) of a simulated run.

    .. math::
        E_{event} = \\text{synops}\\,e_{syn}
                  + (\\text{input\\_events} + \\text{latent\\_events})\\,e_{spk}
                  + T \\sum_\\ell (m_\\ell + R_\\ell)\\,e_{neu}

    where every output accumulator and rank unit is updated once per step (a time-stepped
    chip), and, for comparison, ``dense_mJ = dense_synops · e_mac`` (a dense ``nn.Linear``)
    and ``lowrank_mJ = lowrank_ops · e_mac`` (the dense low-rank path).

    Args:
        report: a ``braingate.sim.Report`` or its ``to_dict()`` (needs ``total``; ``layers``
            and ``meta["steps"]`` for the neuron term, which is 0 without them).
        model: an :class:`EnergyModel` or a preset name.

    Returns:
        dict with ``synops_mJ``, ``spikes_mJ``, ``neurons_mJ``, ``total_mJ`` (event
        execution), ``dense_mJ``, ``lowrank_mJ``.
    """
    em = energy_model(model)
    total = _section(report, "total")
    if "synops" not in total:
        raise ValueError(
            "report has no total['synops']; pass a braingate.sim Report or its to_dict()"
        )
    layers = _section(report, "layers")
    steps = float(_section(report, "meta").get("steps", 0))
    units = sum(
        float(lay.get("out_features", 0)) + float(lay.get("rank", 0)) for lay in layers.values()
    )
    synops = float(total.get("synops", 0.0)) * em.synop_pJ * _PJ_TO_MJ
    events = float(total.get("input_events", 0.0)) + float(total.get("latent_events", 0.0))
    spikes = events * em.spike_pJ * _PJ_TO_MJ
    neurons = steps * units * em.neuron_update_pJ * _PJ_TO_MJ
    return {
        "synops_mJ": synops,
        "spikes_mJ": spikes,
        "neurons_mJ": neurons,
        "total_mJ": synops + spikes + neurons,
        "dense_mJ": float(total.get("dense_synops", 0.0)) * em.mac_pJ * _PJ_TO_MJ,
        "lowrank_mJ": float(total.get("lowrank_ops", 0.0)) * em.mac_pJ * _PJ_TO_MJ,
    }
