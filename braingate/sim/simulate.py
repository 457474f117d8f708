"""simulate(): run a model over a time-first stream and count every operation done and skipped."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from braingate.nn._validate import execution_mode
from braingate.nn.event_linear import EventLinear
from braingate.sim.control import execution, reset
from braingate.sim.fused import EventChain, why_not_fusable
from braingate.sim.report import COUNTERS, Report

__all__ = ["simulate"]


def simulate(
    model: nn.Module,
    xs: Tensor,
    mode: str = "event",
    *,
    reset_state: bool = True,
    fuse: bool = True,
) -> tuple[Tensor, Report]:
    """Run ``model`` over the stream ``xs`` and count operations per layer, per step.

    In ``"event"`` / ``"auto"`` mode the model is called once per time step and every
    :class:`~braingate.nn.EventLinear` recomputes only what changed. In ``"dense"`` mode a
    model without stateful modules gets the whole ``(T, B, ...)`` stream in one call (each
    layer one batched GEMM: the GPU fallback); with stateful modules (snntorch neurons) it is
    stepped in time. Plain ``nn.Linear`` layers are counted as NeuroBench does (``nnz(x)·m``).

    Args:
        model: any module containing EventLinear / nn.Linear layers.
        xs: stream ``(T, B, ...)``, time first.
        mode: ``"event"`` | ``"auto"`` | ``"dense"``.
        reset_state: reset the model's state before the run (``bg.reset``).
        fuse: in event mode, step an ``nn.Sequential`` of EventLinear / ReLU / LIF layers
            through :class:`~braingate.sim.fused.EventChain` (same results, less overhead).

    Returns:
        ``(ys, report)`` with ``ys`` of shape ``(T, B, ...)`` and a :class:`Report`.
    """
    execution_mode(mode)
    if not isinstance(xs, Tensor):
        raise TypeError(f"xs must be a torch.Tensor (T, B, ...), got {type(xs).__name__}")
    if xs.dim() < 2 or xs.shape[0] == 0:
        raise ValueError(f"xs has shape {tuple(xs.shape)}; pass a time-first stream (T, B, ...)")
    if mode == "auto":
        from braingate.sim.calibrate import calibrate

        calibrate(xs.device)
    T, B = xs.shape[0], xs.shape[1]
    rec = _Recorder(model, T, B)
    with torch.no_grad(), execution(model, mode), rec:
        if reset_state:
            reset(model)
        if mode == "dense" and not _stateful(model):
            ys = model(xs)
            rec.dense_steps(T)
        else:
            step = model
            if mode == "event" and fuse and not why_not_fusable(model):
                step = EventChain(model)  # same computation, one call per step
            outs = []
            for t in range(T):
                outs.append(step(xs[t]))
                rec.step(t, dense=mode == "dense")
            ys = torch.stack(outs)
    return ys, rec.report(mode)


def _stateful(model: nn.Module) -> bool:
    return any(type(m).__module__.startswith("snntorch") for m in model.modules())


class _Recorder:
    """Collects per-step counts from EventLinear runners and plain nn.Linear forward hooks."""

    def __init__(self, model: nn.Module, T: int, B: int) -> None:
        self.T, self.B = T, B
        self.events = {n: m for n, m in model.named_modules() if isinstance(m, EventLinear)}
        inner = {id(p) for m in self.events.values() for p in m.modules()}
        self.linears = {n: m for n, m in model.named_modules()
                        if isinstance(m, nn.Linear) and id(m) not in inner}  # fmt: skip
        self.trace = {
            n: {c: np.zeros(T) for c in COUNTERS} for n in {**self.events, **self.linears}
        }
        self.in_units: dict[str, np.ndarray] = {}
        self.dense_t = 0  # steps run by simulate's dense mode (counted here, not by runners)
        self._hooks: list = []
        self._t = 0

    def __enter__(self) -> _Recorder:
        for name, lin in self.linears.items():
            self._hooks.append(lin.register_forward_hook(self._linear_hook(name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()

    def _linear_hook(self, name: str):
        def hook(mod: nn.Linear, inp, out) -> None:
            x = inp[0].detach()
            n, m = mod.in_features, mod.out_features
            nz = (x != 0).reshape(-1, n)
            per_step = nz.reshape(-1, self.B, n).sum(-1).double().mean(-1).cpu().numpy()
            sl = slice(self._t, self._t + len(per_step))
            tr = self.trace[name]
            tr["input_events"][sl] = per_step
            tr["synops"][sl] = per_step * m
            tr["dense_synops"][sl] = n * m
            tr["lowrank_ops"][sl] = n * m
            units = nz.sum(0).cpu().numpy().astype(np.float64) / self.B
            self.in_units[name] = self.in_units.get(name, 0) + units

        return hook

    def step(self, t: int, dense: bool) -> None:
        for name, layer in self.events.items():
            tr = self.trace[name]
            n, m = layer.in_features, layer.out_features
            tr["dense_synops"][t] = n * m
            if dense:
                self._dense_counts(name, layer, slice(t, t + 1))
                continue
            c = layer._runner.last_counts.mean(0)  # input, latent, synops, gate, active
            tr["input_events"][t], tr["latent_events"][t] = c[0], c[1]
            tr["synops"][t], tr["gate_ops"][t] = c[2], c[3]
            tr["lowrank_ops"][t] = (n + m) * c[4]
        self._t = t + 1

    def dense_steps(self, T: int) -> None:
        for name, layer in self.events.items():
            self.trace[name]["dense_synops"][:] = layer.in_features * layer.out_features
            self._dense_counts(name, layer, slice(0, T))

    def _dense_counts(self, name: str, layer: EventLinear, sl: slice) -> None:
        """A dense step sends every input and every active rank unit."""
        tr, n, m = self.trace[name], layer.in_features, layer.out_features
        if name == next(iter(self.events)):
            self.dense_t += sl.stop - sl.start
        active = float(layer.active_rank.double().mean())
        tr["input_events"][sl], tr["latent_events"][sl] = n, active
        tr["synops"][sl] = tr["lowrank_ops"][sl] = (n + m) * active

    def report(self, mode: str) -> Report:
        layers, trace = {}, {}
        for name, tr in self.trace.items():
            mod = self.events.get(name) or self.linears[name]
            d = {c: float(tr[c].sum()) for c in COUNTERS}
            d.update(in_features=mod.in_features, out_features=mod.out_features)
            if name in self.events:
                r = mod._runner
                d["resync_ops"] = r.resync_ops / self.B
                gate = mod.gate_units().expand(self.B, -1).double().mean(0).cpu().numpy()
                in_u = r.input_unit_events / self.B + self.dense_t
                lat_u = r.latent_unit_events / self.B + self.dense_t * gate
                d.update(kind="event_linear", rank=mod.rank, blocks=mod.blocks,
                         input_unit_events=in_u.tolist(), latent_unit_events=lat_u.tolist())  # fmt: skip
            else:
                units = self.in_units.get(name, np.zeros(mod.in_features))
                d.update(kind="linear", rank=min(mod.in_features, mod.out_features), blocks=1,
                         input_unit_events=np.asarray(units).tolist(), latent_unit_events=[])  # fmt: skip
            layers[name] = d
            trace[name] = {c: tr[c].tolist() for c in COUNTERS}
        total = {c: float(sum(d[c] for d in layers.values())) for c in COUNTERS}
        meta = {"steps": self.T, "batch": self.B, "mode": mode}
        return Report(total, layers, trace, meta)
