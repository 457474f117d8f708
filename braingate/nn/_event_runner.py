"""Per-layer event-mode runtime: state, compiled-kernel context, counters, auto-mode decisions.

One ``EventRunner`` belongs to one :class:`~braingate.nn.EventLinear` instance (never shared). It
keeps the layer's :class:`~braingate.state.EventState`, runs each step through the compiled CPU
kernel when it can (no autograd needed, CPU, float32/64) and through the torch reference
:func:`~braingate.functional.event_step` otherwise, and re-syncs exactly every ``resync_every``
steps so float rounding cannot accumulate.

Auto mode predicts both paths' time with the device's :class:`~braingate.functional.cost.CostModel`
from the last step's event counts. A dense step computes the exact output; the state it implies
(``x̂ = x``, ``ẑ = z = Vᵀx``, ``y``) is materialised only when the event path takes over, so a run
of dense steps costs little more than the dense path itself.

The per-step Python work is kept small on purpose: at batch 1 it, not the arithmetic, is what a
sparse step costs. Everything that only changes with the parameters, thresholds, gate or cost
model lives in a cached :class:`_Context`, rebuilt when any of them changes; a steady stream then runs
through :meth:`EventRunner.hot_step`, which checks only what can change between steps (version
counters, the state's identity, the input's shape and dtype) before the kernel call.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from braingate.functional import _kernels
from braingate.functional.cost import current_cost_model
from braingate.functional.event_step import event_step, resync
from braingate.functional.events import refuse_nonfinite
from braingate.nn._optim_watch import optimizer_steps
from braingate.runtime import chain_kernels
from braingate.runtime.chain import entry_point
from braingate.runtime.linear import LINEAR
from braingate.runtime.ops import owned
from braingate.state import EventState

_KERNEL_DTYPES = (torch.float32, torch.float64)
_WITNESS = {  # arrays of the float dtype and of bool: chain_step's type arguments
    torch.float32: (np.zeros(1, np.float32), np.zeros(1, np.bool_)),
    torch.float64: (np.zeros(1, np.float64), np.zeros(1, np.bool_)),
}
_COUNTS = LINEAR.fields.index("counts") - LINEAR.fields.index("x_hat")  # in kernel_row's arrays
_VERSION = operator.attrgetter("_version")


def version_sum(tensors) -> int:
    """Sum of the tensors' version counters: it changes iff one of them was modified in place
    (the counters only grow), at the cost of one C-level loop."""
    return sum(map(_VERSION, tensors))


class _Context(NamedTuple):
    key: tuple
    kernel_args: tuple  # gate, V, Us_t, bias, th, thz as numpy arrays (kernel order)
    gate: Tensor  # (B, R) bool
    full_gate: bool  # every unit of every sample active
    gate_sum: np.ndarray  # (R,) active samples per unit
    active: np.ndarray  # (B,) active units per sample
    mean_active: float
    scale: Tensor  # s ⊙ g, (B, R)
    dense_counts: np.ndarray  # counts of a dense step, (B, 5)
    t_dense: float  # predicted seconds of a dense step
    U_t: Tensor  # Uᵀ view, (R, m)
    cost: object  # the CostModel in force when the context was built
    tracked: tuple  # tensors whose in-place edits invalidate it (see _kernel_array)
    gate_version: int  # the layer's gate version the gate fields were computed at


class _Hot(NamedTuple):
    """Everything a steady event-mode kernel step needs, and what must not change under it."""

    state: EventState | None
    epoch: int
    tracked: tuple  # parameters and per-unit threshold tensors
    version_sum: int  # of their version counters (each only grows, so the sum moves with any)
    shape: torch.Size  # (B, n) of the input
    dtype: torch.dtype
    desc: np.ndarray | None  # the kernel's one-row descriptor; None after a dense step
    keep: tuple | None  # the arrays whose addresses it holds
    witness: tuple  # arrays of the float and bool dtypes (chain_step's type arguments)
    grad_param: Tensor  # U: with autograd on and U requiring grad, the torch path runs instead
    ctx: _Context  # what it was built from (auto mode reads the cost model's prediction)
    kernel: object  # the compiled one-op chain step


class _DenseMark(NamedTuple):
    """What a dense step leaves instead of a state: enough to build one on demand."""

    x: Tensor
    x_version: int
    z: Tensor
    out: Tensor


class EventRunner:
    """State and counters of one layer's event path (see module docstring)."""

    def __init__(self, n: int, m: int, rank: int) -> None:
        self.n, self.m, self.rank = n, m, rank
        self.reset()

    def reset(self, gate: Tensor | None = None, *, drop: bool = False) -> None:
        """Start a new stream: the zero state (consistent with ``gate``, None: all units on),
        counters cleared.

        A state the compiled kernel steps on is zeroed in place, so the lean path and compiled
        chains keep their arrays (a chain registered in ``listeners`` is told first); until the
        next step the batch size may still change. ``drop=True`` (or a state on the autograd
        graph) drops the state instead; the next step builds a new one.
        """
        self.notify()
        st = getattr(self, "state", None)  # None in __init__
        if not drop and self.zeroable():
            per_sample = gate is not None and gate.dim() == 2
            drop = per_sample and gate.shape[0] != st.gate.shape[0]
        else:
            drop = True
        if drop:
            self.state: EventState | None = None
            self._hot: _Hot | None = None
            self._views: tuple | None = None  # numpy views of the state, for the kernel
            self.last_counts: np.ndarray | None = None  # (B, len(COUNT_FIELDS)) int64
            self._counts_buf: np.ndarray | None = None
        else:
            x_hat, z, z_hat, y, gstate = self._views  # numpy views aliasing the state
            g = None if gate is None else gate.detach().cpu().numpy()
            _kernels.zero_stream(x_hat, z, z_hat, y, gstate, g, self._in_units, self._lat_units,
                                 self._lat_units_dense)  # fmt: skip
        if not hasattr(self, "_ctx"):  # the cached _Context survives: its key covers its inputs
            self._ctx: _Context | None = None
            self._basis: tuple | None = None  # factors (id, version) the accumulators match
        if not hasattr(self, "_in_units"):  # later zeroed in place: compiled chains hold them
            self._in_units = np.zeros(self.n, np.int64)  # event-step events per unit, all samples
            self._lat_units = np.zeros(self.rank, np.int64)
            self._lat_units_dense = np.zeros(self.rank, np.int64)  # dense steps, partial gates
        elif drop:
            for arr in (self._in_units, self._lat_units, self._lat_units_dense):
                arr.fill(0)
        self.restarted(fresh=not drop)

    def notify(self) -> None:
        """Run the callbacks in ``listeners`` (a stream ends); drop those whose owner is gone."""
        live = []
        for ref in getattr(self, "listeners", ()):
            callback = ref()
            if callback is not None:
                live.append(ref)
                callback()
        self.listeners = live  # weak references to callbacks run before each reset

    def zeroable(self) -> bool:
        """The state is one the kernel steps on (numpy views, off the autograd graph): a reset
        zeroes it in place."""
        st = getattr(self, "state", None)
        return (
            st is not None
            and self._views is not None
            and self._mark is None
            and not st.y.requires_grad
        )

    def restarted(self, fresh: bool) -> None:
        """Counters of a new stream; the state and per-unit counters were zeroed (``fresh``: in
        place, so until the first step the batch size may still change) or dropped."""
        self._fresh = fresh
        self._mark: _DenseMark | None = None  # set while the last step was dense (auto mode)
        self.steps = 0
        self.resync_ops = 0  # summed over samples
        self._dense_samples = 0  # samples × dense steps taken under a full gate
        self._pred = 0.0  # synops expected at the next step (auto mode)
        self._dense_run = 0  # consecutive dense steps (auto mode)

    def __getstate__(self) -> dict:
        # copies and pickles drop what is derived: numpy views would no longer alias the copied
        # state tensors, and the cached context would outlive the class that defines it
        state = self.__dict__.copy()
        state.update(_views=None, _hot=None, _ctx=None, _basis=None, listeners=[])
        return state

    def __setstate__(self, state: dict) -> None:
        # arrays a loader hands back may view its buffers: the compiled kernels take only arrays
        # the runtime owns (see runtime.ops.owned), so counters are copied into owned ones
        for k, v in state.items():
            if isinstance(v, np.ndarray) and not v.flags.owndata:
                state[k] = np.array(v, copy=True, order="C")
        self.__dict__.update(state)

    @property
    def input_unit_events(self) -> np.ndarray:
        """Events per input coordinate, summed over samples and steps (dense steps send all)."""
        return self._in_units + self._dense_samples

    @property
    def latent_unit_events(self) -> np.ndarray:
        """Events per rank unit, summed over samples and steps."""
        return self._lat_units + self._lat_units_dense + self._dense_samples

    # -- cached context -----------------------------------------------------------------------
    def context(self, layer, gate: Tensor, B: int) -> _Context:
        P = layer._parameters
        U, s, V, b = P["U"], P["s"], P["V"], P["bias"]
        cost = current_cost_model(U.device.type)
        key = (U._version, s._version, V._version, -1 if b is None else b._version,
               layer._epoch, B, _threshold_key(layer, "threshold", P),
               _threshold_key(layer, "latent_threshold", P), id(cost), optimizer_steps())  # fmt: skip
        ctx = self._ctx
        if ctx is not None and ctx.key == key:
            if ctx.gate_version != layer._gate_version:
                ctx = self.regate(layer, ctx, gate, B)
            return ctx
        n, m, R = self.n, self.m, self.rank
        if U.shape != (m, R) or s.shape != (R,) or V.shape != (n, R):
            raise ValueError(
                f"factors U {tuple(U.shape)}, s {tuple(s.shape)}, V {tuple(V.shape)} do not fit "
                f"this layer; assign U ({m}, {R}), s ({R},) and V ({n}, {R})"
            )
        if gate.dim() == 2 and gate.shape[0] != B:
            raise ValueError(
                f"per-sample gate for B={gate.shape[0]} does not match batch {B}; "
                "call set_active_blocks with a (B, blocks) mask for this batch"
            )
        basis = (id(U), U._version, id(s), s._version, id(V), V._version, optimizer_steps())
        if basis != self._basis:
            # the factors changed mid-stream: the accumulators were built with the old ones
            self._basis, self._mark = basis, None
            if self.state is not None:
                self._resync(layer)
        self._fresh_gate(gate, B)
        with torch.no_grad():
            g = gate.expand(B, -1).contiguous()
            # every kernel argument is a copy the runtime owns: the user may move or free the
            # original tensors at any time (share_memory_, set_, del); edits are noticed
            # through the tracked version counters and rebuild the copies
            g_np = np.array(g.cpu().numpy(), copy=True, order="C")
            dt = np.float64 if U.dtype == torch.float64 else np.float32
            wide = torch.float64 if dt is np.float64 else torch.float32  # bfloat16 / half: f32
            Us_t = owned((U * s).t().contiguous().to(wide).cpu().numpy())
            Vn = np.array(V.detach().to(wide).cpu().numpy(), dtype=dt, copy=True, order="C")
            # what the kernel arguments copied (edits must be noticed; V: the state depends on it)
            tracked = [U, s, V, *(() if b is None else (b,)), *layer.threshold_tensors()]
            bias = np.zeros(self.m, dt) if b is None else _kernel_array(b, self.m, dt)
            th = _kernel_array(layer.threshold, self.n, dt)
            thz = _kernel_array(layer.latent_threshold, self.rank, dt)
            args = (g_np, Vn, Us_t, bias, th, thz)
        self._ctx = _Context(key, args, *self._gate_fields(g, g_np, s, B, cost), U.detach().t(),
                             cost, tuple(tracked), layer._gate_version)  # fmt: skip
        return self._ctx

    def _fresh_gate(self, gate: Tensor, B: int) -> None:
        st = self.state
        if self._fresh and st is not None and st.gate.shape[0] == B:
            st.gate.copy_(gate.expand(B, -1))  # a zero state is consistent with any gate

    def _gate_fields(self, g: Tensor, g_np: np.ndarray, s: Tensor, B: int, cost) -> tuple:
        """The context fields that depend on the gate (``g`` (B, R) and its kernel array)."""
        active = g_np.sum(-1).astype(np.int64)
        dense_counts = np.zeros((B, 5), np.int64)
        dense_counts[:, 0], dense_counts[:, 1], dense_counts[:, 4] = self.n, active, active
        dense_counts[:, 2] = (self.n + self.m) * active
        mean_active = float(active.sum()) / B
        with torch.no_grad():
            scale = (s * g).detach() if not bool(g_np.all()) else s.detach().expand(B, -1)
        return (g, bool(g_np.all()), g_np.sum(0).astype(np.int64), active, mean_active, scale,
                dense_counts, cost.dense_time(B, self.n, self.m, mean_active))  # fmt: skip

    def regate(self, layer, ctx: _Context, gate: Tensor, B: int) -> _Context:
        """A new gate (per step, e.g. a scheduler's per-sample ranks) on an unchanged context:
        the kernel's gate array is overwritten in place (its address stays valid for compiled
        steps) and only the gate-dependent fields are recomputed — no factor copies."""
        if gate.dim() == 2 and gate.shape[0] != B:
            raise ValueError(
                f"per-sample gate for B={gate.shape[0]} does not match batch {B}; "
                "call set_active_blocks with a (B, blocks) mask for this batch"
            )
        self._fresh_gate(gate, B)
        g = gate.expand(B, -1)
        g_np = ctx.kernel_args[0]
        np.copyto(g_np, g.cpu().numpy())
        fields = self._gate_fields(g, g_np, layer._parameters["s"], B, ctx.cost)
        names = ("gate", "full_gate", "gate_sum", "active", "mean_active", "scale",
                 "dense_counts", "t_dense")  # fmt: skip
        self._ctx = ctx._replace(**dict(zip(names, fields, strict=True)),
                                 gate_version=layer._gate_version)  # fmt: skip
        return self._ctx

    def ensure_state(self, layer, ctx: _Context) -> None:
        """Start from the zero state (consistent with the current gate) if there is none."""
        if self.state is None:
            U = layer._parameters["U"]
            self.state = EventState.zeros(ctx.gate.shape[0], self.n, self.m, ctx.gate,
                                          U.dtype, U.device)  # fmt: skip
            self._views = None

    # -- one step -------------------------------------------------------------------------------
    def hot_step(self, layer, x, auto: bool) -> Tensor | None:
        """One step of a steady stream in as little Python as possible, or None.

        None (nothing done) unless the last step ran on the same parameters, thresholds, gate,
        cost model, input shape and dtype, and this step takes the same path: a kernel step on
        the same state, or (auto mode) another dense step. The caller then takes the checked path
        (:meth:`step`), which raises on bad input and handles every switch.
        """
        hot = self._hot
        if (
            hot is None
            or layer._epoch != hot.epoch
            or type(x) is not Tensor  # subclasses (FakeTensor, ...) may have no data to read
            or x.shape != hot.shape
            or x.dtype is not hot.dtype
            or not x.is_cpu
            or x.requires_grad
            or x.layout is not torch.strided
            or (torch.is_grad_enabled() and hot.grad_param.requires_grad)
        ):
            return None
        # the context key ends with the optimizer-step count it was built at (see context())
        if version_sum(hot.tracked) != hot.version_sum or optimizer_steps() != hot.ctx.key[-1]:
            return None
        if layer._gate_version != hot.ctx.gate_version:  # a new gate: a step input, in place
            gate = layer.gate_units()
            if gate.dim() == 2 and gate.shape[0] != hot.shape[0]:
                return None
            hot = self._hot = hot._replace(ctx=self.regate(layer, hot.ctx, gate, hot.shape[0]))
        B = hot.shape[0]
        if auto:
            ctx = hot.ctx
            if ctx.cost is not current_cost_model("cpu"):
                return None
            dense = self._prefer_dense(B, ctx)
            if self._mark is not None:  # the last step was dense
                if not dense:
                    return None  # switching to events: the checked path builds the state
                self.steps += 1
                self._fresh = False
                return self._dense_step(layer, x, ctx)
            if dense:
                return None
        if hot.desc is None or self.state is not hot.state:
            return None
        xc = x if x.is_contiguous() else x.contiguous()
        out = hot.kernel(xc.data_ptr(), B, hot.desc, *hot.witness)
        counts = hot.keep[_COUNTS]
        self.last_counts = counts
        if auto:
            self._pred = _kernels.synops_total(counts)
        self.steps += 1
        self._fresh = False
        k = layer.resync_every
        if k and self.steps % k == 0:
            self._resync(layer)
        return torch.from_numpy(out)

    def _make_hot(self, layer, x: Tensor, ctx: _Context, kernel: bool) -> None:
        """Record what :meth:`hot_step` needs after a checked step (``kernel``: a kernel step)."""
        P = layer._parameters
        tracked = ctx.tracked
        row = self.kernel_row(layer, ctx, self._counts_buf) if kernel else None
        desc = None if row is None else np.array([row[0]], np.int64)
        witness = _WITNESS.get(x.dtype)
        step = None
        if desc is not None:  # its entry point for these argument types: no per-call dispatch
            step = entry_point(_one_layer_kernel(), 0, x.shape[0], desc, *witness)
        self._hot = _Hot(
            self.state if kernel else None, layer._epoch, tracked, version_sum(tracked),
            x.shape, x.dtype, desc, None if row is None else row[1], witness, P["U"], ctx, step,
        )  # fmt: skip

    def kernel_row(self, layer, ctx: _Context, counts: np.ndarray):
        """This layer's :data:`~braingate.runtime.linear.LINEAR` descriptor row and the arrays
        whose addresses it holds (the caller keeps them alive); None if one of them does not
        have the kernel's dtype, shape and layout or is not owned by the runtime (never
        expected: the state, kernel arguments and counters are all allocated here)."""
        arrays = (*self._views, *ctx.kernel_args, counts, self._in_units, self._lat_units,
                  self._lat_units_dense)  # fmt: skip
        f = self._views[0].dtype
        want = [f] * 4 + [np.bool_] * 2 + [f] * 5 + [np.int64] * 4
        B, n, m, R = counts.shape[0], self.n, self.m, self.rank
        shapes = [(B, n), (B, R), (B, R), (B, m), (B, R), (B, R), (n, R), (R, m), (m,), (n,), (R,)]
        shapes += [(B, 5), (n,), (R,), (R,)]
        for arr, dt, shape in zip(arrays, want, shapes, strict=True):
            if (
                arr.dtype != dt
                or arr.shape != shape
                or not arr.flags.c_contiguous
                or not arr.flags.owndata
            ):
                return None
        names = LINEAR.fields[LINEAR.fields.index("x_hat") :]
        row = LINEAR.pack(
            in_size=self.n, out_size=self.m, R=self.rank,
            **{k: a.ctypes.data for k, a in zip(names, arrays, strict=True)},
        )  # fmt: skip
        return row, arrays

    def step(self, layer, x: Tensor, gate: Tensor, auto: bool) -> Tensor:
        B = x.shape[0]
        if self.state is not None:
            known = self.state.x_hat
        else:
            known = self._mark.x if self._mark is not None else None
        if known is not None and known.shape[0] != B and self._fresh:
            self.state, self._views, self._hot, known = None, None, None, None  # a new stream
        if known is not None and known.shape[0] != B:
            raise ValueError(
                f"batch size changed from {known.shape[0]} to {B} mid-stream; "
                "call layer.reset() (or bg.reset(model)) before a new stream"
            )
        ctx = self.context(layer, gate, B)
        if auto and (known is None or self._prefer_dense(B, ctx)):
            out = self._dense_step(layer, x, ctx)
            if x.is_cpu:
                self._make_hot(layer, x, ctx, kernel=False)
        else:
            if self._mark is not None and not self._materialise(layer, x, ctx):
                out = self._dense_step(layer, x, ctx)  # the caller overwrote the last input
            else:
                self.ensure_state(layer, ctx)
                out = self._event_step(layer, x, ctx)
                if self._views is not None and x.is_cpu:
                    self._make_hot(layer, x, ctx, kernel=True)
                if auto:
                    self._pred = float(self.last_counts[:, 2].sum())
        self.steps += 1
        self._fresh = False
        if layer.resync_every and self.steps % layer.resync_every == 0 and self.state is not None:
            self._resync(layer)
        return out

    def _event_step(self, layer, x: Tensor, ctx: _Context) -> Tensor:
        if (
            _kernels.AVAILABLE
            and x.device.type == "cpu"
            and x.dtype in _KERNEL_DTYPES
            and not (
                torch.is_grad_enabled()
                and (x.requires_grad or layer._parameters["U"].requires_grad)
            )
        ):
            return self._kernel_step(x, ctx)
        refuse_nonfinite(x.detach())
        y, self.state, c, (in_ev, lat_ev) = event_step(
            x, self.state, layer.U, layer.s, layer.V, ctx.gate,
            layer.threshold, layer.latent_threshold,
        )  # fmt: skip
        self._views = None
        self.last_counts = torch.stack(list(c), dim=1).detach().cpu().numpy().astype(np.int64)
        self._in_units += in_ev.detach().sum(0).cpu().numpy().astype(np.int64)
        self._lat_units += lat_ev.detach().sum(0).cpu().numpy().astype(np.int64)
        return y if layer.bias is None else y + layer.bias

    def _kernel_step(self, x: Tensor, ctx: _Context) -> Tensor:
        xn = (x.detach() if x.requires_grad else x).contiguous().numpy()
        views = self._views
        if views is None:
            views = self._adopt()
        out = np.empty((xn.shape[0], self.m), xn.dtype)
        counts = self._counts_buf
        if counts is None or counts.shape[0] != xn.shape[0]:
            counts = self._counts_buf = np.empty((xn.shape[0], 5), np.int64)
        g, V, Us_t, bias, th, thz = ctx.kernel_args
        _kernels.event_step_np(
            xn, *views, g, V, Us_t, bias, th, thz, out, counts, self._in_units, self._lat_units,
        )  # fmt: skip
        self.last_counts = counts
        return torch.from_numpy(out)

    def _adopt(self) -> tuple:
        """Move the state into arrays this runner allocates and owns (the compiled kernels read
        nothing else); the state tensors become views of them. Returns the arrays."""
        arrays = tuple(np.array(t.detach().cpu().numpy(), copy=True, order="C") for t in self.state)
        self._views = arrays
        self.state = EventState(*(torch.from_numpy(a) for a in arrays))
        return arrays

    def _resync(self, layer) -> None:
        U, s, V = layer.U.detach(), layer.s.detach(), layer.V.detach()
        new = resync(self.state, U, s, V)
        if self._views is not None:  # in place: compiled chains keep their addresses
            with torch.no_grad():
                self.state.z.copy_(new.z)
                self.state.y.copy_(new.y)
        else:
            self.state = new
        self.resync_ops += int(self.state.gate.sum()) * (self.n + self.m)

    # -- auto mode ------------------------------------------------------------------------------
    def _prefer_dense(self, B: int, ctx: _Context) -> bool:
        # last step's synops (or the would-be synops of the last dense step), with hysteresis:
        # near the crossover the predictions are noisy, and each switch to the event path costs
        # a materialised state, so a path is left only for a clear (15 %) predicted gain
        t_event = ctx.cost.event_time(B, self.n, self._pred)
        margin = 0.85 if self._mark is not None else 1.0 / 0.85
        return t_event > margin * ctx.t_dense

    def _dense_step(self, layer, x: Tensor, ctx: _Context) -> Tensor:
        """Exact low-rank step; leaves a :class:`_DenseMark` instead of updating the state."""
        refuse_nonfinite(x.detach())
        P = layer._parameters
        z = x @ P["V"]
        zs = z * ctx.scale
        b = P["bias"]
        out = zs @ ctx.U_t if b is None else torch.addmm(b, zs, ctx.U_t)
        prev = self._mark
        self._dense_run = self._dense_run + 1 if prev is not None else 0
        if self._dense_run % 8 == 0 and (prev is not None or self.state is not None):
            # would-be events against the last step: what the event path would have sent
            # (refreshed every 8th dense step: a stale estimate delays a switch by <= 7 steps)
            _, _, _, _, th, thz = ctx.kernel_args
            px, pz = (prev.x, prev.z) if prev is not None else (self.state.x_hat, self.state.z_hat)
            if prev is None or prev.x._version == prev.x_version:
                ie, le = _count_over(x, px, th), _count_over(z, pz, thz)
                self._pred = (ie + le * self.m / self.rank) * ctx.mean_active
        self._mark = _DenseMark(x, x._version, z, out)
        self.state, self._views = None, None
        if ctx.full_gate:
            self._dense_samples += x.shape[0]
        else:
            self._lat_units_dense += ctx.gate_sum
            self._in_units += x.shape[0]
        self.last_counts = ctx.dense_counts
        return out

    def _materialise(self, layer, x: Tensor, ctx: _Context) -> bool:
        """Build the state a dense step implies; False if its input was overwritten in place."""
        mark, self._mark = self._mark, None
        if mark.x._version != mark.x_version:
            return False
        b = layer._parameters["bias"]
        with torch.no_grad():
            y = mark.out - b if b is not None else mark.out.clone()
            z = mark.z.detach().clone()
            self.state = EventState(mark.x.detach().clone(), z, z.clone(), y.detach(),
                                    ctx.gate.clone())  # fmt: skip
        self._views = None
        return True


def _one_layer_kernel():
    """The compiled step of a one-op chain (built once per process, then cached)."""
    return chain_kernels(("event_linear",))[0]


def _count_over(a: Tensor, b: Tensor, th: np.ndarray) -> int:
    """Entries with ``|a − b| > th`` (``th`` per column)."""
    if a.is_cpu and _kernels.AVAILABLE and a.dtype in _KERNEL_DTYPES:
        a, b = a.detach(), b.detach()
        an = (a if a.is_contiguous() else a.contiguous()).numpy()
        bn = (b if b.is_contiguous() else b.contiguous()).numpy()
        return _kernels.count_over_np(an, bn, th)
    return int(((a - b).abs() > torch.as_tensor(th, device=a.device)).sum())


def _threshold_key(layer, name: str, params: dict) -> object:
    """What identifies a threshold's current value: a learned one by its raw parameter."""
    raw = params.get(name + "_raw")
    if raw is not None:
        return ("raw", id(raw), raw._version)
    value = getattr(layer, "_" + name)
    return (id(value), value._version) if isinstance(value, Tensor) else value


def _kernel_array(value, size: int, dtype) -> np.ndarray:
    """``value`` (scalar or tensor) as a ``(size,)`` kernel argument of ``dtype``: always a copy
    the runtime owns (the caller tracks the tensors it came from)."""
    if not isinstance(value, Tensor):
        return np.full(size, value, dtype=dtype)
    arr = value.detach().double().cpu().numpy().astype(dtype).reshape(-1)
    return np.full(size, arr[0], dtype) if arr.size == 1 else np.array(arr, copy=True)
