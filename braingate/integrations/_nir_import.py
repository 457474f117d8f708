"""from_nir(): rebuild a torch model from a chain-shaped NIR graph, EventLinear where it fits."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from braingate._registry import Registry
from braingate.integrations._optional import require
from braingate.nn.event_linear import EventLinear
from braingate.nn.lif import LIF

__all__ = ["IMPORTERS", "ScaleLayer", "from_nir"]

#: Import of one NIR node, by the node's class name (``"Conv2d"``, ``"LIF"``, ...):
#: ``fn(nir, node, dt) -> nn.Module``. Factor chains (``Linear → [Scale] → Linear/Affine``)
#: become an EventLinear before single nodes are looked up here.
IMPORTERS: Registry = Registry("NIR importer")


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
    ``s_j = ‖(c⊙A)_j‖``, ``V_j = (c⊙A)_j / s_j`` (unit columns). Other nodes through
    :data:`IMPORTERS`: ``Conv1d`` / ``Conv2d`` → ``nn.Conv1d/2d``, or the ``EventConv1d/2d`` whose
    ``U``, ``s``, ``V``, gate and thresholds the metadata holds; ``AvgPool2d`` → ``nn.AvgPool2d``,
    ``SumPool2d`` → ``nn.AvgPool2d(divisor_override=1)``; ``Flatten`` → ``nn.Flatten`` (NIR's
    batch-free dims + 1); ``LIF`` → snntorch ``Leaky`` (braingate ``LIF`` when exported from one),
    ``CubaLIF`` → ``Synaptic`` (``β = 1 − dt/τ``; ``r = τ/dt`` and ``v_leak = 0`` required;
    per-unit parameters keep the node's shape, e.g. ``(C, H, W)`` after a conv).

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
    for cls in type(node).__mro__:
        if cls.__name__ in IMPORTERS and getattr(nir, cls.__name__, None) is cls:
            return IMPORTERS.get(cls.__name__)(nir, node, dt)
    known = ", ".join(IMPORTERS.names())
    raise ValueError(f"NIR node {type(node).__name__} has no braingate import; supported: "
                     f"{known} (plus Input/Output)")  # fmt: skip


@IMPORTERS.register("Linear")
@IMPORTERS.register("Affine")
def _import_linear(nir, node, dt: float) -> nn.Module:
    w = _t(node.weight)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
    with torch.no_grad():
        lin.weight.copy_(w)
        if lin.bias is not None:
            lin.bias.copy_(_t(node.bias))
    md = node.metadata or {}
    if _str(md.get("braingate_kind")) == "event_linear":  # form="fused": refactor by SVD
        return EventLinear.from_linear(
            lin,
            int(md["braingate_rank"]),
            blocks=int(md.get("braingate_blocks", 1)),
            threshold=_threshold(md, "braingate_threshold"),
            latent_threshold=_threshold(md, "braingate_latent_threshold"),
        )
    return lin


@IMPORTERS.register("Scale")
def _import_scale(nir, node, dt: float) -> nn.Module:
    return ScaleLayer(_t(node.scale))


def _ints(v, dims: int) -> tuple[int, ...]:
    a = np.asarray(v).reshape(-1).astype(np.int64)
    return tuple(int(x) for x in (np.broadcast_to(a, (dims,)) if a.size == 1 else a))


def _conv_padding(v, dims: int):
    v = _str(v) if isinstance(v, (str, bytes)) else v
    return v if isinstance(v, str) else _ints(v, dims)


@IMPORTERS.register("Conv1d")
@IMPORTERS.register("Conv2d")
def _import_conv(nir, node, dt: float) -> nn.Module:
    r"""``nn.Conv1d/2d``, or the ``EventConv1d/2d`` whose factors the metadata holds (checked
    against the node's weight: an edited weight is refactored by SVD at the saved rank)."""
    dims = 2 if isinstance(node, nir.Conv2d) else 1
    w = _t(node.weight)
    md = node.metadata or {}
    has_bias = bool(int(md.get("braingate_bias", 1)))
    kw = {"stride": _ints(node.stride, dims), "padding": _conv_padding(node.padding, dims),
          "dilation": _ints(node.dilation, dims)}  # fmt: skip
    groups = int(np.asarray(node.groups))
    conv_type = nn.Conv2d if dims == 2 else nn.Conv1d
    conv = conv_type(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), groups=groups,
                     bias=has_bias, **kw)  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(w)
        if has_bias:
            conv.bias.copy_(_t(node.bias))
    kind = _str(md.get("braingate_kind"))
    if kind not in ("event_conv1d", "event_conv2d"):
        return conv
    from braingate.nn.event_conv import EventConv1d, EventConv2d

    cls = EventConv2d if dims == 2 else EventConv1d
    rank, blocks = int(md["braingate_rank"]), int(md.get("braingate_blocks", 1))
    settings = {"blocks": blocks, "threshold": _threshold(md, "braingate_threshold"),
                "latent_threshold": _threshold(md, "braingate_latent_threshold"),
                "granularity": _str(md.get("braingate_granularity", "element")),
                "resync_every": int(md.get("braingate_resync_every", 1000))}  # fmt: skip
    gate = torch.as_tensor(np.asarray(md.get("braingate_gate", np.ones(blocks)))).bool()
    if "braingate_U" in md and "braingate_V" in md and "braingate_s" in md:
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, rank,
                    bias=has_bias, **kw, **settings)  # fmt: skip
        with torch.no_grad():
            layer.U.copy_(_t(md["braingate_U"]))
            layer.s.copy_(_t(md["braingate_s"]))
            layer.V.copy_(_t(md["braingate_V"]))
            if has_bias:
                layer.bias.copy_(conv.bias)
        if not bool(gate.all()):
            layer.set_active_blocks(gate)
        with torch.no_grad():
            same = torch.allclose(layer.weight(), w, rtol=1e-4, atol=1e-6 * float(w.abs().max()))
        if same:
            return layer
        warnings.warn(
            f"NIR conv {_str(md.get('braingate_name', '?'))!r}: its weight no longer equals the "
            "braingate factors in its metadata (edited after export?); refactoring the weight "
            f"by SVD at rank {rank}",
            stacklevel=4,
        )
    return cls.from_conv(conv, rank, **settings)


@IMPORTERS.register("AvgPool2d")
@IMPORTERS.register("SumPool2d")
def _import_pool(nir, node, dt: float) -> nn.Module:
    """``nn.AvgPool2d``; a SumPool2d is one with ``divisor_override=1``."""
    k = _ints(node.kernel_size, 2)
    div = 1 if isinstance(node, nir.SumPool2d) else None
    return nn.AvgPool2d(k, _ints(node.stride, 2), _ints(node.padding, 2),
                        count_include_pad=True, divisor_override=div)  # fmt: skip


@IMPORTERS.register("Flatten")
def _import_flatten(nir, node, dt: float) -> nn.Module:
    """NIR's dims leave out the batch: ``nn.Flatten(start_dim + 1, end_dim + 1)``."""
    s, e = int(node.start_dim), int(node.end_dim)
    return nn.Flatten(s + 1 if s >= 0 else s, e + 1 if e >= 0 else e)


@IMPORTERS.register("LIF")
@IMPORTERS.register("CubaLIF")
def _import_neuron(nir, node, dt: float) -> nn.Module:
    return _neuron(nir, node, dt)


def _scalar_or_tensor(a: np.ndarray):
    """One value, or a per-unit tensor in the node's shape (``(C, H, W)`` after a conv)."""
    a = np.asarray(a, dtype=np.float32)
    return float(a.reshape(-1)[0]) if np.unique(a).size == 1 else torch.as_tensor(a.copy())


def _str(v):
    return v.decode() if isinstance(v, bytes) else v


def _neuron(nir, node, dt: float) -> nn.Module:
    snn = require("snntorch", "nir")
    cuba = isinstance(node, nir.CubaLIF)
    tau = np.asarray(node.tau_mem if cuba else node.tau, dtype=np.float64)
    if not np.allclose(node.v_leak, 0.0) or not np.allclose(node.r, tau / dt, rtol=1e-4):
        raise ValueError(f"{type(node).__name__} needs v_leak=0 and r=tau/dt (dt={dt}) to map onto "
                         "snntorch's discrete neuron; pass dt= matching the exporter")  # fmt: skip
    md = node.metadata or {}
    if _str(md.get("braingate_kind")) == "lif" and not cuba and np.asarray(tau).ndim == 1:
        return LIF(int(np.asarray(tau).size), _t(1.0 - dt / tau), _t(node.v_threshold),
                   _str(md.get("braingate_reset", "subtract")))  # fmt: skip
    reset = str(_str(md.get("snntorch_reset_mechanism", "zero")))
    kw = {"beta": _scalar_or_tensor(1.0 - dt / tau), "threshold": _scalar_or_tensor(node.v_threshold),
          "reset_mechanism": reset, "init_hidden": True,
          "reset_delay": bool(md.get("snntorch_reset_delay", False))}  # fmt: skip
    if not cuba:
        return snn.Leaky(**kw)
    tau_syn = np.asarray(node.tau_syn, dtype=np.float64)
    if not np.allclose(np.asarray(node.w_in) * dt / tau_syn, 1.0, rtol=1e-4):
        raise ValueError("CubaLIF needs w_in = tau_syn/dt to map onto snntorch.Synaptic")
    return snn.Synaptic(alpha=_scalar_or_tensor(1.0 - dt / tau_syn), **kw)
