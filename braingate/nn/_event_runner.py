"""Per-layer event-mode runtime: state, compiled-kernel views, counters, auto-mode decisions.

One ``EventRunner`` belongs to one :class:`~braingate.nn.EventLinear` instance (never shared). It
keeps the layer's :class:`~braingate.state.EventState`, runs each step through the compiled CPU
kernel when it can (no autograd needed, CPU, float32/64) and through the torch reference
:func:`~braingate.functional.event_step` otherwise, and re-syncs exactly every ``resync_every``
steps so float rounding cannot accumulate.

Auto mode predicts both paths' time with the device's :class:`~braingate.functional.cost.CostModel`
from the previous step's event counts. A dense step computes the exact output and leaves the state
consistent with it (``x̂ = x``, ``ẑ = z = Vᵀx``), so the event path can take over at any step.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from braingate.functional import _kernels
from braingate.functional.cost import current_cost_model
from braingate.functional.event_step import event_step, resync
from braingate.state import EventState

_KERNEL_DTYPES = (torch.float32, torch.float64)


class EventRunner:
    """State and counters of one layer's event path (see module docstring)."""

    def __init__(self, n: int, m: int, rank: int) -> None:
        self.n, self.m, self.rank = n, m, rank
        self.reset()

    def reset(self) -> None:
        self.state: EventState | None = None
        self._views: tuple | None = None  # numpy views of the state, for the kernel
        self._aliased = False  # the state aliases a dense step's tensors (auto mode)
        self.steps = 0
        self.last_counts: np.ndarray | None = None  # (B, len(COUNT_FIELDS)) int64
        self.last_dense = False
        self.resync_ops = 0  # summed over samples
        self.input_unit_events = np.zeros(self.n, np.int64)  # summed over samples and steps
        self.latent_unit_events = np.zeros(self.rank, np.int64)
        self._pred = (0.0, 0.0)  # (Σ|E|·R_act, Σ|L|·m) expected at the next step (auto mode)

    # -- one step -------------------------------------------------------------------------------
    def step(self, layer, x: Tensor, gate: Tensor, auto: bool) -> Tensor:
        B = x.shape[0]
        if self.state is not None and self.state.x_hat.shape[0] != B:
            raise ValueError(
                f"batch size changed from {self.state.x_hat.shape[0]} to {B} mid-stream; "
                "call layer.reset() (or bg.reset(model)) before a new stream"
            )
        if self.state is None:
            g0 = gate if gate.dim() == 1 else gate[:1]
            self.state = EventState.zeros(B, self.n, self.m, g0, x.dtype, x.device)
            self._views = None
            dense = auto  # nothing to compare with yet: every nonzero input is an event
        else:
            dense = auto and self._prefer_dense(layer, B, gate)
        if dense:
            out = self._dense_step(layer, x, gate)
        else:
            out = self._event_step(layer, x, gate)
            if auto:
                c = self.last_counts
                self._pred = (float((c[:, 0] * c[:, 4]).sum()), float(c[:, 1].sum()) * self.m)
        self.steps += 1
        if layer.resync_every and self.steps % layer.resync_every == 0:
            self._own_state()
            U, s, V = layer.U.detach(), layer.s.detach(), layer.V.detach()
            self.state = resync(self.state, U, s, V)
            self._views = None
            self.resync_ops += int(self.state.gate.sum()) * (self.n + self.m)
        return out

    def _use_kernel(self, layer, x: Tensor) -> bool:
        if not _kernels.AVAILABLE or x.device.type != "cpu" or x.dtype not in _KERNEL_DTYPES:
            return False
        return not (torch.is_grad_enabled() and (x.requires_grad or layer.U.requires_grad))

    def _event_step(self, layer, x: Tensor, gate: Tensor) -> Tensor:
        self._own_state()
        self.last_dense = False
        if self._use_kernel(layer, x):
            out = self._kernel_step(layer, x, gate)
        else:
            y, self.state, c, (in_ev, lat_ev) = event_step(
                x, self.state, layer.U, layer.s, layer.V, gate.expand(x.shape[0], -1),
                layer.threshold, layer.latent_threshold,
            )  # fmt: skip
            self._views = None
            self.last_counts = torch.stack(list(c), dim=1).cpu().numpy().astype(np.int64)
            self.input_unit_events += in_ev.sum(0).cpu().numpy()
            self.latent_unit_events += lat_ev.sum(0).cpu().numpy()
            out = y if layer.bias is None else y + layer.bias
        return out

    def _kernel_step(self, layer, x: Tensor, gate: Tensor) -> Tensor:
        if self._views is None:
            self._views = tuple(t.numpy() for t in self.state)
        x_hat, z, z_hat, y, gstate = self._views
        Us_t, V, bias, th, thz = layer._kernel_params()
        B = x.shape[0]
        out = torch.empty(B, self.m, dtype=x.dtype)
        counts = np.empty((B, 5), np.int64)
        _kernels.event_step_np(
            x.detach().contiguous().numpy(), x_hat, z, z_hat, y, gstate,
            layer._gate_np(gate, B), V, Us_t, bias, th, thz, out.numpy(), counts,
            self.input_unit_events, self.latent_unit_events,
        )  # fmt: skip
        self.last_counts = counts
        return out

    # -- auto mode ------------------------------------------------------------------------------
    def _prefer_dense(self, layer, B: int, gate: Tensor) -> bool:
        cost = current_cost_model(layer.U.device.type)
        active = int(layer._gate_np(gate, B).sum()) // B
        input_ops, latent_ops = self._pred  # last step's events (or would-be events if dense)
        t_event = cost.event_time(B, self.n, input_ops, latent_ops)
        return t_event > cost.dense_time(B, self.n, self.m, active)

    def _dense_step(self, layer, x: Tensor, gate: Tensor) -> Tensor:
        """Exact low-rank step; the state becomes ``x̂ = x, ẑ = z = Vᵀx`` (aliased, no copies)."""
        prev_x, prev_z = self.state.x_hat, self.state.z_hat
        z = x @ layer.V
        y = (z * (layer.s * gate)) @ layer.U.t()
        out = y if layer.bias is None else y + layer.bias
        B = x.shape[0]
        gate_np = layer._gate_np(gate, B)
        active = gate_np.sum(-1).astype(np.int64)
        # would-be events against the last state: what the event path would have sent
        th, thz = layer._kernel_params()[3:]
        ie = self._count_over(x, prev_x, th)
        le = self._count_over(z, prev_z, thz) * float(active.mean()) / max(self.rank, 1)
        self._pred = (ie * float(active.mean()), le * self.m)
        # x is cloned: a caller may refill its input buffer in place before the next step
        self.state = EventState(x.detach().clone(), z, z, y, gate.expand(B, -1))
        self._aliased, self._views, self.last_dense = True, None, True
        self.input_unit_events += B  # a dense step sends every input and active rank unit
        self.latent_unit_events += gate_np.sum(0)
        counts = np.zeros((B, 5), np.int64)
        counts[:, 0], counts[:, 1], counts[:, 4] = self.n, active, active
        counts[:, 2] = (self.n + self.m) * active
        self.last_counts = counts
        return out

    @staticmethod
    def _count_over(a: Tensor, b: Tensor, th: np.ndarray) -> float:
        if a.device.type == "cpu" and _kernels.AVAILABLE and a.dtype in _KERNEL_DTYPES:
            return float(_kernels.count_over_np(a.detach().numpy(), b.detach().numpy(), th))
        return float(((a - b).abs() > torch.as_tensor(th, device=a.device)).sum())

    def _own_state(self) -> None:
        """Give the state its own contiguous memory after aliased dense steps."""
        if self._aliased:
            s = self.state
            gate = s.gate.clone()
            self.state = EventState(
                s.x_hat.detach().clone(), s.z.detach().clone(), s.z_hat.detach().clone(),
                s.y.detach().clone(), gate,
            )  # fmt: skip
            self._aliased, self._views = False, None
