"""Energy and latency per time step of a Placement, from the chip's per-event costs.

Per step (events are the measured events per step of the network's units):

.. math::

    E_{synops} &= e_{syn} \\sum_{tiles} \\sum_{i \\in cols} ev_i \\cdot rows \\\\
    E_{neurons} &= \\sum_{units} a_u e_{active} + (1 - a_u) e_{idle},\\quad a_u=\\min(1, ev_u) \\\\
    E_{spikes} &= e_{spike} \\sum_{nets} w \\cdot |\\text{distinct sink cores}| \\\\
    E_{noc} &= \\sum_{nets} w \\sum_{c \\in \\text{sink cores}} (h_x e_{EW} + h_y e_{NS}
        + h_{off} e_{off})(\\text{src}, c) \\\\
    E_{static} &= P_{static} \\cdot \\text{chips used} \\cdot t_{step}

``t_step`` is the chip's time step, or the latency for an asynchronous chip. Latency per step =
the busiest core's work (synops·t_syn + neurons·t_neuron) + the slowest route that carries traffic.
External inputs arrive at their sink cores without NoC cost (assumption: host injection).
Partial sums of column-split (input-split) blocks are nets too: one packet per distinct piece
core other than the accumulator's, at the accumulated unit's measured event rate (assumption,
:mod:`hwmaps.hypergraph`); a piece's rows count as neurons on its core.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from hwmaps.hypergraph import build, core_traffic
from hwmaps.ir import Placement
from hwmaps.route import Geometry, link_loads


@dataclass(frozen=True)
class EnergyReport:
    """Energy (J per step), latency (s per step), utilisation and hop statistics.

    ``extra["steps"]`` is the run's length T when the network records it (a Report's
    ``meta["steps"]``): per sample = per step × T (:meth:`per_sample_j`).
    """

    total_j: float
    breakdown: dict[str, float]
    latency_s_per_step: float
    core_utilisation: dict[int, dict[str, float]]
    hops: dict[str, float]
    cores_used: int
    chips_used: int
    method: str = ""
    chip: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def dynamic_j(self) -> float:
        """Dynamic energy per step: everything but static power (J)."""
        return self.total_j - self.breakdown["static"]

    def per_sample_j(self) -> dict[str, float] | None:
        """The breakdown, ``dynamic`` and ``total`` in J per sample (T steps); None when the
        network does not record T."""
        steps = self.extra.get("steps")
        if not steps:
            return None
        out = {k: v * steps for k, v in self.breakdown.items()}
        out.update(dynamic=self.dynamic_j * steps, total=self.total_j * steps)
        return out

    def to_dict(self) -> dict:
        """JSON-ready dict (core ids as strings), with ``per_sample_j`` when T is known."""
        d = asdict(self)
        d["core_utilisation"] = {str(k): v for k, v in self.core_utilisation.items()}
        d["units"] = {"energy": "J per step", "latency_s_per_step": "s per step",
                      "per_sample_j": "J per sample (T = extra['steps'] steps)"}  # fmt: skip
        d["per_sample_j"] = self.per_sample_j()
        return d


def _traffic(placement: Placement):
    hg = build(placement.network, placement.tiles)
    core_of = np.asarray(placement.cores)
    used, local = np.unique(core_of, return_inverse=True)
    W = core_traffic(hg, local, len(used))
    return hg, core_of, used, local, W


def estimate(placement: Placement) -> EnergyReport:
    """Estimate energy and latency per time step of ``placement`` (see module docstring).

    Args:
        placement: from :func:`hwmaps.map_network`.

    Returns:
        EnergyReport with ``total_j``, ``breakdown`` {"synops", "neurons", "spikes", "noc",
        "static"}, ``latency_s_per_step``, ``core_utilisation`` {core: {"neurons",
        "synapses"} fractions}, ``hops`` {"mean", "max", "hop_events", "packets"}.
    """
    if not isinstance(placement, Placement):
        raise TypeError(f"placement must be a Placement, got {type(placement).__name__}")
    chip = placement.chip
    geo = Geometry(chip)
    hg, _core_of, used, local, W = _traffic(placement)
    k = len(used)
    a, b = np.meshgrid(used, used, indexing="ij")
    Wc = W[:k]
    packets = float(W.sum())
    hop_m = geo.hops(a, b)
    busy = Wc > 0
    noc = float((Wc * geo.energy(a, b)).sum())
    synops = float(hg.synops.sum())
    active = float(hg.active.sum())
    neurons = float(hg.neurons.sum())
    work = np.bincount(local, hg.synops * chip.t_synop_s + hg.neurons * chip.t_neuron_s, k)
    route = float(geo.latency(a, b)[busy].max()) if busy.any() else 0.0
    latency = float(work.max()) + route
    chips_used = len(np.unique(chip.coords()[used, 2]))
    step = chip.time_step_s if chip.time_step_s is not None else latency
    breakdown = {
        "synops": synops * chip.e_synop_j,
        "neurons": active * chip.e_neuron_active_j + (neurons - active) * chip.e_neuron_idle_j,
        "spikes": packets * chip.e_spike_j,
        "noc": noc,
        "static": chip.static_w * chips_used * step,
    }
    cap_n, cap_s = chip.capacities()
    n_core = np.bincount(local, hg.neurons, k)
    s_core = np.bincount(local, hg.synapses, k)
    util = {int(c): {"neurons": float(n_core[i] / cap_n[c]),
                     "synapses": float(s_core[i] / cap_s[c])} for i, c in enumerate(used)}  # fmt: skip
    hop_events = float((Wc * hop_m).sum())
    hops = {
        "mean": hop_events / packets if packets else 0.0,
        "max": float(hop_m[busy].max()) if busy.any() else 0.0,
        "hop_events": hop_events,
        "packets": packets,
    }
    return EnergyReport(
        total_j=float(sum(breakdown.values())),
        breakdown=breakdown,
        latency_s_per_step=latency,
        core_utilisation=util,
        hops=hops,
        cores_used=k,
        chips_used=chips_used,
        method=placement.method,
        chip=chip.name,
        extra={
            "synops_per_step": synops,
            "map_time_s": placement.meta.get("map_time_s"),
            "steps": placement.network.meta.get("steps"),
        },
    )


def placement_link_loads(placement: Placement) -> dict:
    """Events per step on every directed router link of the XY routes of ``placement``."""
    _, _, used, _, W = _traffic(placement)
    return link_loads(placement.chip, W[: len(used)], used)
