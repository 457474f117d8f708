"""from_nir(): rebuild a torch model from a chain-shaped NIR graph, EventLinear where it fits."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from braingate.integrations._optional import require
from braingate.nn.event_linear import EventLinear

__all__ = ["ScaleLayer", "from_nir"]


class ScaleLayer(nn.Module):
    """Elementwise scale ``y = x ⊙ s`` (a NIR ``Scale`` node that is not part of a factor chain)."""

    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        self.scale = nn.Parameter(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def from_nir(graph, *, dt: float | None = None) -> nn.Sequential:
    r"""Rebuild an ``nn.Sequential`` from a NIR graph whose edges form one chain.

    A ``Linear(A) → [Scale(c)] → Linear/Affine(U)`` chain whose inner size ``R ≤ min(n, m)``
    becomes an :class:`~braingate.nn.EventLinear`; its ``s``, thresholds, blocks and gate come from
    the first node's ``braingate_*`` metadata when present. Without metadata
    ``s_j = ‖(c⊙A)_j‖``, ``V_j = (c⊙A)_j / s_j`` (unit columns). ``LIF`` → snntorch ``Leaky``,
    ``CubaLIF`` → ``Synaptic`` (``β = 1 − dt/τ``; ``r = τ/dt`` and ``v_leak = 0`` required).

    Args:
        graph: a ``nir.NIRGraph`` (e.g. from :func:`to_nir` or ``nir.read``).
        dt: time step; defaults to ``graph.metadata["dt"]`` or 1e-4.

    Returns:
        ``nn.Sequential`` of the rebuilt modules; neurons use ``init_hidden=True``.
    """
    nir = require("nir", "nir")
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph, got {type(graph).__name__}")
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    dt = float(meta.get("dt", 1e-4)) if dt is None else float(dt)
    nodes = [graph.nodes[k] for k in _chain(graph)]
    nodes = [n for n in nodes if not isinstance(n, (nir.Input, nir.Output))]
    mods, i = [], 0
    while i < len(nodes):
        used, mod = _factor(nir, nodes, i)
        if mod is None:
            used, mod = 1, _single(nir, nodes[i], dt)
        mods.append(mod)
        i += used
    return nn.Sequential(*mods)


def _chain(graph) -> list[str]:
    succ: dict[str, list[str]] = {}
    pred: dict[str, int] = {k: 0 for k in graph.nodes}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
        pred[b] = pred.get(b, 0) + 1
    starts = [k for k, c in pred.items() if c == 0]
    if (
        len(starts) != 1
        or any(len(v) > 1 for v in succ.values())
        or any(c > 1 for c in pred.values())
    ):
        raise ValueError("from_nir rebuilds chain-shaped graphs only (one input, no branches, no "
                         f"recurrence); got entry nodes {starts} and edges {graph.edges}")  # fmt: skip
    order = [starts[0]]
    while order[-1] in succ:
        order.append(succ[order[-1]][0])
    if len(order) != len(graph.nodes):
        raise ValueError(
            f"graph has nodes outside its chain: {sorted(set(graph.nodes) - set(order))}"
        )
    return order


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32))


def _factor(nir, nodes, i: int):
    """``(nodes used, EventLinear)`` when a factor chain starts at ``nodes[i]``, else ``(0, None)``."""
    first = nodes[i]
    if not isinstance(first, nir.Linear) or i + 1 >= len(nodes):
        return 0, None
    j, scale = i + 1, None
    if isinstance(nodes[j], nir.Scale):
        scale, j = _t(nodes[j].scale), j + 1
    if j >= len(nodes) or not isinstance(nodes[j], (nir.Linear, nir.Affine)):
        return 0, None
    A, U = _t(first.weight), _t(nodes[j].weight)
    R, n, m = A.shape[0], A.shape[1], U.shape[0]
    if U.shape[1] != R or R > min(n, m):
        return 0, None
    md = first.metadata or {}
    blocks = int(md.get("braingate_blocks", 1))
    s = _t(md["braingate_s"]) if "braingate_s" in md else None
    gate = torch.as_tensor(np.asarray(md.get("braingate_gate", np.ones(blocks)))).bool()
    units = gate.repeat_interleave(R // blocks)
    c = scale if scale is not None else torch.ones(R)
    if s is None:  # no metadata: put the row norms of diag(c)·A into s
        rows = c[:, None] * A
        s = rows.norm(dim=1)
        V = torch.where(s[:, None] > 0, rows / s.clamp_min(1e-30)[:, None], 0.0).t()
    elif scale is not None:  # "scaled": A = Vᵀ, c = s ⊙ g
        V = A.t()
    else:  # "folded": A = diag(s ⊙ g)·Vᵀ; gated-off rows are zero and stay so
        sg = s * units
        V = torch.where(sg[:, None] != 0, A / torch.where(sg == 0, 1.0, sg)[:, None], 0.0).t()
    bias = isinstance(nodes[j], nir.Affine)
    layer = EventLinear(n, m, R, blocks=blocks, bias=bias,
                        threshold=_threshold(md, "braingate_threshold"),
                        latent_threshold=_threshold(md, "braingate_latent_threshold"))  # fmt: skip
    with torch.no_grad():
        layer.U.copy_(U)
        layer.s.copy_(s)
        layer.V.copy_(V)
        if bias:
            layer.bias.copy_(_t(nodes[j].bias))
    if not bool(gate.all()):
        layer.set_active_blocks(gate)
    return j - i + 1, layer


def _threshold(md: dict, key: str):
    v = np.asarray(md.get(key, 0.0))
    return float(v) if v.ndim == 0 else torch.as_tensor(v.astype(np.float32))


def _single(nir, node, dt: float) -> nn.Module:
    if isinstance(node, (nir.Linear, nir.Affine)):
        w = _t(node.weight)
        lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
        with torch.no_grad():
            lin.weight.copy_(w)
            if lin.bias is not None:
                lin.bias.copy_(_t(node.bias))
        md = node.metadata or {}
        if md.get("braingate_kind") == "event_linear":  # form="fused": refactor by SVD
            return EventLinear.from_linear(
                lin,
                int(md["braingate_rank"]),
                blocks=int(md.get("braingate_blocks", 1)),
                threshold=_threshold(md, "braingate_threshold"),
                latent_threshold=_threshold(md, "braingate_latent_threshold"),
            )
        return lin
    if isinstance(node, nir.Scale):
        return ScaleLayer(_t(node.scale))
    if isinstance(node, (nir.LIF, nir.CubaLIF)):
        return _neuron(nir, node, dt)
    raise ValueError(f"NIR node {type(node).__name__} has no braingate import; supported: Linear, "
                     "Affine, Scale, LIF, CubaLIF (plus Input/Output)")  # fmt: skip


def _scalar_or_tensor(a: np.ndarray):
    a = np.asarray(a, dtype=np.float32).reshape(-1)
    return float(a[0]) if np.unique(a).size == 1 else torch.as_tensor(a)


def _neuron(nir, node, dt: float) -> nn.Module:
    snn = require("snntorch", "nir")
    cuba = isinstance(node, nir.CubaLIF)
    tau = np.asarray(node.tau_mem if cuba else node.tau, dtype=np.float64)
    if not np.allclose(node.v_leak, 0.0) or not np.allclose(node.r, tau / dt, rtol=1e-4):
        raise ValueError(f"{type(node).__name__} needs v_leak=0 and r=tau/dt (dt={dt}) to map onto "
                         "snntorch's discrete neuron; pass dt= matching the exporter")  # fmt: skip
    md = node.metadata or {}
    reset = md.get("snntorch_reset_mechanism", "zero")
    reset = reset.decode() if isinstance(reset, bytes) else str(reset)
    kw = {"beta": _scalar_or_tensor(1.0 - dt / tau), "threshold": _scalar_or_tensor(node.v_threshold),
          "reset_mechanism": reset, "init_hidden": True,
          "reset_delay": bool(md.get("snntorch_reset_delay", False))}  # fmt: skip
    if not cuba:
        return snn.Leaky(**kw)
    tau_syn = np.asarray(node.tau_syn, dtype=np.float64)
    if not np.allclose(np.asarray(node.w_in) * dt / tau_syn, 1.0, rtol=1e-4):
        raise ValueError("CubaLIF needs w_in = tau_syn/dt to map onto snntorch.Synaptic")
    return snn.Synaptic(alpha=_scalar_or_tensor(1.0 - dt / tau_syn), **kw)
