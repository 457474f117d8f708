"""One call per time step for a whole chain of event layers: no module dispatch in between.

At batch 1 the arithmetic of a sparse step is a few microseconds per layer; PyTorch's module call,
argument checks and tensor wrapping cost more than that. :class:`EventChain` runs an
``nn.Sequential`` of :class:`~braingate.nn.EventLinear` layers (event mode), each followed by at
most one activation (ReLU, :class:`~braingate.nn.LIF`, Identity), as **one** compiled call per
step (:func:`braingate.functional._kernels.chain_step`). It works on the layers' own state and
counters, so it computes exactly what ``model(x)`` computes step by step, and it checks at every
call that no parameter, threshold, gate or state changed behind its back (if one did, it
re-reads them). :func:`braingate.simulate` uses it automatically when it applies.
"""

from __future__ import annotations

import operator
import weakref

import numpy as np
import torch
from torch import Tensor, nn

from braingate.functional import _kernels
from braingate.nn._event_runner import _WITNESS, version_sum
from braingate.nn._optim_watch import optimizer_steps
from braingate.nn.event_linear import EventLinear
from braingate.nn.lif import LIF
from braingate.sim.control import reset as reset_model

__all__ = ["EventChain", "compile_events", "why_not_fusable"]

_EPOCH = operator.itemgetter("_epoch")
_STRIDED = torch.strided
_PASS = (nn.Identity, nn.Dropout)  # no-ops in a no-grad event step (Dropout in eval mode)


class EventChain:
    """Compiled event-mode stepping of ``nn.Sequential(EventLinear, act, EventLinear, act, ...)``.

    Args:
        model: the network (or a single EventLinear). Every EventLinear must be in ``"event"``
            execution, on CPU, float32 or float64 (float32 when LIF neurons are present); each
            may be followed by one ReLU or LIF (Identity / eval-mode Dropout are skipped).

    Shape: ``(B, n) -> (B, m)`` per call; :func:`braingate.reset` between streams.
    """

    def __init__(self, model: nn.Module) -> None:
        reason = why_not_fusable(model)
        if reason:
            raise TypeError(f"cannot fuse this model: {reason}")
        self.model = model
        mods = [m for m in _modules(model) if not isinstance(m, _PASS)]
        self.plan: list[tuple[EventLinear, nn.Module | None]] = []
        for m in mods:
            if isinstance(m, EventLinear):
                self.plan.append((m, None))
            else:
                self.plan[-1] = (self.plan[-1][0], m)
        self.in_features = self.plan[0][0].in_features
        self.dtype = self.plan[0][0].U.dtype
        self._packed: object | None = None
        self._batch = -1
        self._shape = torch.Size((-1, self.in_features))  # of the packed batch
        self._pending, self._due = 0, 1  # steps not yet handed to the layers (see _flush_steps)
        self._after_reset = False
        self._listener = weakref.WeakMethod(self._before_reset)
        self._watch: list = []
        self._runners: list = []
        self._ptrs: list = []

    def __call__(self, x: Tensor) -> Tensor:
        if (
            type(x) is not Tensor  # subclasses (FakeTensor, ...) may have no data to read
            or x.shape != self._shape
            or x.dtype is not self.dtype
            or not x.is_cpu
            or x.requires_grad
            or x.layout is not _STRIDED
            or not self._still_valid()
        ):
            return self._call_checked(x)
        return self._step(x if x.is_contiguous() else x.contiguous())

    def _step(self, x: Tensor) -> Tensor:
        if self._after_reset:  # the layers' first step since a reset: no longer fresh
            for r in self._runners:
                r._fresh = False
            self._after_reset = False
        out = _kernels.chain_step(x.data_ptr(), self._batch, self._packed, *self._types)
        self._pending += 1
        if self._pending >= self._due:
            self._flush_steps()
        return torch.from_numpy(out)

    def _call_checked(self, x) -> Tensor:
        """A first step, a step after a change or reset, or input the fast test did not accept."""
        if type(x) is not Tensor:
            return self.model(x)  # the module path raises the precise error (or copes)
        shape = x.shape
        if (
            len(shape) != 2
            or shape[1] != self.in_features
            or not shape[0]
            or x.dtype != self.dtype
            or not x.is_cpu
            or x.layout is not _STRIDED
        ):
            return self.model(x)  # nothing has run yet: the module path raises the precise error
        if self._packed is None or shape[0] != self._batch or not self._still_valid():
            if not self._pack(shape[0]):
                return self.model(x)  # e.g. a batch change mid-stream: the module path says so
        return self._step((x.detach() if x.requires_grad else x).contiguous())

    def reset(self) -> None:
        """:func:`braingate.reset` of the model, its layers' part in one compiled call.

        The general path runs instead when the packed arrays are not all current, or a layer's
        state cannot be zeroed in place (see ``EventRunner.zeroable``).
        """
        runners = self._runners if self._packed is not None else ()
        for r in runners:
            r.notify()  # chains on these layers (this one too) end their stream: a re-sync may run
        if (
            self._packed is None
            or not runners
            or not self._still_valid()
            or not all(r.zeroable() for r in runners)
        ):
            reset_model(self.model)
            return
        _kernels.chain_reset(self._batch, self._packed, *self._types)
        for r in runners:
            r.restarted(fresh=True)

    def _before_reset(self) -> None:
        """Run by a layer's ``reset`` (see ``EventRunner.listeners``): the steps taken so far
        belong to the stream that ends, and the next step is a first one."""
        if self._pending:
            self._flush_steps()
        self._after_reset = True

    def _flush_steps(self) -> None:
        """Hand the steps run since the last flush to the layers; re-sync those that are due."""
        due, p = 1 << 62, self._pending
        for layer, _ in self.plan:
            r, k = layer._runner, layer.resync_every
            r.steps += p
            if k:
                if (r.steps - p) // k != r.steps // k and r.state is not None:
                    r._resync(layer)
                    self._packed = None  # the state tensors were replaced
                due = min(due, k - r.steps % k)
        self._pending, self._due = 0, due

    # -- packing the kernel's arguments ---------------------------------------------------------
    def _pack(self, B: int) -> bool:
        """Write the kernel's descriptor (:data:`~braingate.functional._kernels.CHAIN_FIELDS`):
        the data addresses of every layer's state, arguments and counters. ``self._keep`` holds
        each of those arrays, and :meth:`_still_valid` re-packs when one is replaced."""
        self._flush_steps()
        rows, keep, watch, layer_dicts, runners, tracked, ptrs = [], [], [], [], [], [], []
        for layer, act in self.plan:
            r = layer._runner
            if layer.U.dtype is not self.dtype or layer.execution != "event":
                return False  # converted or switched since: the module path runs (or says why)
            if r.state is not None and r.state.x_hat.shape[0] != B and r._fresh:
                r.state, r._views, r._hot = None, None, None  # reset, then a new batch size
            if r._mark is not None or (r.state is not None and r.state.x_hat.shape[0] != B):
                return False
            if self._listener not in r.listeners:
                r.listeners = [w for w in r.listeners if w() is not None] + [self._listener]
            ctx = r.context(layer, layer.gate_units(), B)
            r.ensure_state(layer, ctx)
            r._views = tuple(t.numpy() for t in r.state)
            r.last_counts = np.zeros((B, 5), np.int64)
            lif, code = (), 0
            if isinstance(act, nn.ReLU):
                code = 1
            elif isinstance(act, LIF):
                if act.mem is None or tuple(act.mem.shape) != (B, act.size):
                    act.mem = torch.zeros(B, act.size)
                lif = (act.mem.numpy(), act.beta.detach().numpy(), act.threshold.detach().numpy())
                code = 3 if act.reset_mode == "zero" else 2
                watch += [
                    (act.__dict__, "mem", act.mem),
                    (act._buffers, "beta", act.beta),
                    (act._buffers, "threshold", act.threshold),
                ]  # read in place
                ptrs.append((act.mem, act.mem.data_ptr()))  # a storage swap keeps the tensor
            made = r.kernel_row(layer, ctx, r.last_counts, code, lif)
            if made is None:  # an array without the kernel's dtype or layout (never expected)
                return False
            keep += made[1]
            rows.append(made[0])
            runners.append(r)
            watch += [
                (r.__dict__, "state", r.state),
                (r.__dict__, "_in_units", r._in_units),
                (r.__dict__, "last_counts", r.last_counts),  # the module path replaces it
                (layer.__dict__, "resync_every", layer.resync_every),  # sets when to flush
                (layer.__dict__, "_execution", layer._execution),  # "event" (checked in _pack)
            ]
            tracked += ctx.tracked
            layer_dicts.append(layer.__dict__)
        self._packed = np.array(rows, np.int64)
        self._types = _WITNESS[self.dtype]
        self._keep, self._batch = keep, B
        self._shape = torch.Size((B, self.in_features))
        self._watch, self._layer_dicts = watch, layer_dicts
        self._runners = runners
        self._tracked = tracked
        self._ptrs = ptrs
        self._version_sum = version_sum(self._tracked)
        self._epoch_sum = sum(map(_EPOCH, layer_dicts))
        self._optimizer_steps = optimizer_steps()
        return True

    def _inputs_unchanged(self) -> bool:
        """Parameters, thresholds and gates are those packed.

        Version counters and epochs only ever grow, so their sums change exactly when one of
        them does: two C-level sums instead of a Python loop over every tensor.
        """
        return (
            version_sum(self._tracked) == self._version_sum
            and sum(map(_EPOCH, self._layer_dicts)) == self._epoch_sum
            and optimizer_steps() == self._optimizer_steps
        )

    def _still_valid(self) -> bool:
        """Nothing the packed arguments depend on changed (parameters, thresholds, gates, state).

        Plain loops with early exit: this runs every step, and at batch 1 it costs more than the
        arithmetic of a sparse step.
        """
        for d, key, obj in self._watch:
            if d.get(key) is not obj:
                return False
        for t, ptr in self._ptrs:
            if t.data_ptr() != ptr:
                return False
        return self._inputs_unchanged()


def _modules(model: nn.Module) -> list[nn.Module]:
    return list(model) if isinstance(model, nn.Sequential) else [model]


def why_not_fusable(model: nn.Module) -> str:
    """Empty string if :class:`EventChain` can run ``model``, else the reason."""
    if not _kernels.AVAILABLE:
        return "the compiled kernels (numba) are not available"
    mods = _modules(model)
    layers = [m for m in mods if isinstance(m, EventLinear)]
    if not layers:
        return "it has no EventLinear layer"
    dtypes = {m.U.dtype for m in layers}
    if len(dtypes) > 1 or (dtypes != {torch.float32} and any(isinstance(m, LIF) for m in mods)):
        return f"mixed dtypes {sorted(map(str, dtypes))} (LIF needs float32 layers)"
    width, after_act = None, True  # features flowing between modules (the kernels never overrun)
    for i, m in enumerate(mods):
        if isinstance(m, _PASS):
            if isinstance(m, nn.Dropout) and m.training:
                return f"module {i} is a Dropout in training mode"
            continue
        if isinstance(m, EventLinear):
            if m.execution != "event":
                return f"layer {i} has execution={m.execution!r}, not 'event'"
            if m.U.device.type != "cpu" or m.U.dtype not in _WITNESS:
                return f"layer {i} is {m.U.dtype} on {m.U.device}; needs float32/64 on CPU"
            if width is not None and width != m.in_features:
                return f"layer {i} takes {m.in_features} features but receives {width}"
            width, after_act = m.out_features, False
        elif isinstance(m, (nn.ReLU, LIF)):
            if after_act:
                return f"module {i} ({type(m).__name__}) does not directly follow an EventLinear"
            if isinstance(m, LIF) and m.size != width:
                return f"LIF {i} has size {m.size} but receives {width} features"
            after_act = True
        else:
            return f"module {i} ({type(m).__name__}) is not an EventLinear, LIF, ReLU or Identity"
    return ""


def compile_events(model: nn.Module) -> EventChain:
    """An :class:`EventChain` for ``model`` (TypeError with the reason when it cannot fuse)."""
    return EventChain(model)
