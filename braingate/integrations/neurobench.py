"""NeuroBench model wrapper whose SynapticOperations equal braingate's own synops.

NeuroBench 2.3 hooks only ``nn.Linear`` / ``nn.Conv*`` / ``nn.RNNCellBase`` and counts, per hooked
call, ``Σ_out Σ_in [x_in ≠ 0]·[W ≠ 0]`` (REFERENCES §B); an :class:`~braingate.nn.EventLinear` is
invisible to it. :class:`NeuroBenchModel` runs the model in event mode and, after each step of each
EventLinear, replays the step as ``nn.Linear`` calls that NeuroBench hooks ("probes"):

- per gate block ``b``, ``Linear(n, R_b)`` with weight ``V_bᵀ`` fed with the sparse input deltas
  ``Δ_E`` of the samples whose block is on: ``Σ |E|·R_active`` operations;
- per gate block, ``Linear(R_b, m)`` with weight ``U_b·diag(s_b)`` fed with the sparse latent
  deltas ``(z − ẑ)_L``: ``Σ |L|·m`` operations.

So NeuroBench's ``Effective_MACs + Effective_ACs`` is braingate's ``synops`` and its ``Dense``
(every input nonzero) is ``(n + m)·R_active`` per step, braingate's ``lowrank_ops``. With
``view="dense"`` each EventLinear is replayed as one ``Linear(n, m)`` holding ``U diag(s⊙g) Vᵀ``
fed with the layer input, so ``Dense`` is braingate's ``dense_synops`` (what NeuroBench reports for
the unfactored network). Plain ``nn.Linear`` layers of the model are hooked as usual (braingate's
simulate counts them the same way). The transmitted deltas pass through :class:`EventActivity`
modules, so ``ActivationSparsity`` includes braingate's events next to ReLU / snntorch outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from braingate._registry import Registry
from braingate.integrations._optional import require
from braingate.nn.base import EventModule, event_modules
from braingate.nn.event_linear import EventLinear
from braingate.sim.control import execution, reset

_nbm = require("neurobench.models", "neurobench")

__all__ = ["PROBES", "EventActivity", "NeuroBenchModel"]

VIEWS = ("event", "dense")


class EventActivity(nn.Identity):
    """Identity that NeuroBench's ActivationSparsity hooks: it sees the events a layer sends."""


class _Probe(nn.Module):
    """The ``nn.Linear`` replay of one EventLinear (see module docstring)."""

    def __init__(self, layer: EventLinear, view: str) -> None:
        super().__init__()
        self.layer, self.view = layer, view
        n, m, R, nb = layer.in_features, layer.out_features, layer.rank, layer.blocks
        if view == "dense":
            self.full = nn.Linear(n, m, bias=False)
        else:
            self.v = nn.ModuleList(nn.Linear(n, R // nb, bias=False) for _ in range(nb))
            self.u = nn.ModuleList(nn.Linear(R // nb, m, bias=False) for _ in range(nb))
        self.inputs, self.latents = EventActivity(), EventActivity()
        self.before: tuple | None = None

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the layer's current factors into the probe weights."""
        L = self.layer
        if self.view == "dense":
            w = L.dense_weight()
            self.full.weight.copy_(w if w.dim() == 2 else L.U * L.s @ L.V.t())
            return
        copy_blocks(self)

    def pre(self, x: Tensor) -> None:
        """Snapshot the references before the step (the compiled kernel updates them in place)."""
        st = self.layer._runner.state
        if st is None:
            B, L = x.shape[0], self.layer
            gate = L.gate_units().expand(B, -1).clone()
            self.before = (torch.zeros_like(x), x.new_zeros(B, L.rank), gate)
        else:
            self.before = (st.x_hat.clone(), st.z_hat.clone(), st.gate.clone())

    def post(self, x: Tensor) -> None:
        """Replay the step that just ran as hooked ``nn.Linear`` calls."""
        if self.view == "dense":
            self.full(self.inputs(x.detach()))
            return
        x_old, z_old, g_old = self.before
        st, L = self.layer._runner.state, self.layer
        dx = st.x_hat - x_old  # Δ on the input events E, 0 elsewhere
        dz = st.z_hat - z_old  # (z − ẑ) on the latent events L, 0 elsewhere ...
        on = st.gate & ~g_old
        if bool(on.any()):  # ... except blocks switched on, whose ẑ was reset to V_bᵀ x̂ first
            fresh = x_old @ L.V.detach()
            dz = torch.where(on, st.z_hat - fresh, dz)
            dz = dz * ((dz.abs() > 1e-6 * (1.0 + fresh.abs())) | ~on)
        dz = dz * st.gate
        dx, dz = self.inputs(dx), self.latents(dz)
        size = L.rank // L.blocks
        for b in range(L.blocks):
            rows = st.gate[:, b * size]
            if not bool(rows.any()):
                continue
            self.v[b](dx[rows])
            self.u[b](dz[rows, b * size : (b + 1) * size])


#: Event layer ``kind`` -> probe class ``(layer, view) -> nn.Module`` with ``sync()``,
#: ``pre(x)`` and ``post(x)`` that replay one step of the layer as calls NeuroBench hooks.
PROBES: Registry[type] = Registry("NeuroBench probe")
PROBES.add("event_linear", _Probe)


@torch.no_grad()
def copy_blocks(probe: nn.Module) -> None:
    """Copy a factored layer's gate blocks into a probe's per-block replay weights: ``probe.v[b]``
    gets block ``b`` of ``Vᵀ``, ``probe.u[b]`` the same block of ``U·diag(s)`` (linear and conv
    probes alike)."""
    L = probe.layer
    size = L.rank // L.blocks
    for b in range(L.blocks):
        sl = slice(b * size, (b + 1) * size)
        probe.v[b].weight.copy_(L.V[:, sl].t())
        probe.u[b].weight.copy_((L.U * L.s)[:, sl])


def _probe_for(layer: EventModule, view: str) -> nn.Module:
    if layer.kind not in PROBES:
        raise ValueError(
            f"no NeuroBench probe is registered for event layers of kind {layer.kind!r} "
            f"(known: {', '.join(map(str, PROBES.names()))}); register one with "
            "braingate.integrations.neurobench.PROBES.add(kind, ProbeClass)"
        )
    return PROBES.get(layer.kind)(layer, view)


class NeuroBenchModel(_nbm.NeuroBenchModel):
    r"""NeuroBench model interface for a braingate model (batch-first ``(B, T, F)`` data).

    .. math::
        \text{NeuroBench synops} = \sum_t \sum_{\ell}\, |E_t|\,R_{act} + |L_t|\,m
        = \texttt{report.total["synops"]}

    Args:
        model: a module built from EventLinear / nn.Linear / activations that takes one step
            ``(B, F)`` per call (as :func:`braingate.simulate` runs it).
        view: ``"event"`` (probes replay the sparse deltas; Dense = lowrank_ops) or ``"dense"``
            (one ``Linear(n, m)`` per EventLinear fed with its input; Dense = dense_synops).

    Shape:
        ``__call__``: ``(B, T, F) -> (B, T, out)``.
    """

    def __init__(self, model: nn.Module, *, view: str = "event") -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if view not in VIEWS:
            raise ValueError(f"view={view!r} is unknown; pass one of {VIEWS}")
        self.net, self.view = model.eval(), view
        layers = event_modules(model).values()
        self.probes = nn.ModuleList(_probe_for(layer, view) for layer in layers)
        self.add_activation_module(EventActivity)
        snn = _snntorch()
        if snn is not None:
            self.add_activation_module(snn.SpikingNeuron)

    def __call__(self, batch: Tensor) -> Tensor:
        if not isinstance(batch, Tensor) or batch.dim() < 3:
            shape = tuple(batch.shape) if isinstance(batch, Tensor) else type(batch).__name__
            raise ValueError(f"batch has shape {shape}; NeuroBench data is batch-first (B, T, F)")
        self.reset()
        for p in self.probes:
            p.sync()
        handles = []
        for p in self.probes:
            handles.append(p.layer.register_forward_pre_hook(lambda _m, a, p=p: p.pre(a[0])))
            handles.append(p.layer.register_forward_hook(lambda _m, a, _o, p=p: p.post(a[0])))
        mode = "event" if self.view == "event" else "dense"
        try:
            with torch.no_grad(), execution(self.net, mode):
                outs = [self.net(batch[:, t]) for t in range(batch.shape[1])]
        finally:
            for h in handles:
                h.remove()
        return torch.stack(outs, dim=1)

    def __net__(self) -> nn.Module:
        return self.net

    def reset(self) -> None:
        """Clear the state of every layer, and call the model's own ``reset()`` if it has one."""
        reset(self.net)
        own = getattr(self.net, "reset", None)
        if callable(own) and not type(self.net).__module__.startswith("braingate"):
            own()

    def connection_layers(self) -> list[nn.Module]:
        """The model's own hooked layers plus the probes' ``nn.Linear`` replays."""
        probes = [m for p in self.probes for m in p.modules() if isinstance(m, nn.Linear)]
        return super().connection_layers() + probes

    def activation_layers(self) -> list[dict]:
        """The model's activations plus the probes' :class:`EventActivity` modules."""
        extra = [
            {"layer_name": f"probe{i}.{k}", "layer": getattr(p, k)}
            for i, p in enumerate(self.probes)
            for k in ("inputs", "latents")
        ]
        return super().activation_layers() + extra


def _snntorch():
    try:
        import snntorch
    except ImportError:  # pragma: no cover - snntorch is a core dependency
        return None
    return snntorch


from braingate.integrations import neurobench_conv  # noqa: E402, F401 - registers conv probes
