"""One compiled call per time step for a whole network: no module dispatch in between.

At batch 1 the arithmetic of a sparse step is a few microseconds per layer; PyTorch's module call,
argument checks and tensor wrapping cost more than that. :class:`EventChain` lowers every module of
an ``nn.Sequential`` (nested ones flattened) through the fusers registered in
:mod:`braingate.runtime` (event layers, ReLU, LIF, Flatten, ...) and runs each maximal run of
lowered modules as **one** compiled call (:func:`braingate.runtime.chain_kernels`). Modules
without a fuser run as ordinary module calls between compiled segments, so any model steps.

It works on the layers' own state and counters, so it computes exactly what ``model(x)`` computes
step by step, and before every step it checks that nothing it lowered changed behind its back
(parameters, thresholds, gates, states, a module replaced in the Sequential, a tensor's storage
moved); if something did, it lowers the model again. Compiled steps only read arrays the runtime
owns (see :class:`braingate.runtime.Row`) and run under :data:`braingate.runtime.RUNTIME_LOCK`,
so nothing done from Python — other threads included — makes them read memory they do not own.
"""

from __future__ import annotations

import operator
import weakref
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from braingate.functional import _kernels
from braingate.nn._event_runner import _WITNESS, version_sum
from braingate.nn._optim_watch import optimizer_steps
from braingate.nn.base import event_modules
from braingate.runtime import RUNTIME_LOCK, Row, chain_kernels, fuser_for
from braingate.runtime.chain import entry_point
from braingate.sim.control import reset as reset_model

__all__ = ["EventChain", "compile_events", "why_not_fusable"]

_STRIDED = torch.strided
_VERSION = operator.attrgetter("_version")
_IS, _EQ, _GET = operator.is_, operator.eq, dict.get
_ACQUIRE, _RELEASE = RUNTIME_LOCK.acquire, RUNTIME_LOCK.release


class _Compiled(NamedTuple):
    """A run of lowered modules: one compiled call."""

    rows: tuple
    desc: np.ndarray
    step: object
    reset: object
    in_size: int
    out_shape: tuple


def _slots(model: nn.Module) -> list[tuple[dict | None, str | None, nn.Module]]:
    """``(container._modules, key, module)`` in forward order; nested Sequentials flattened."""
    if not isinstance(model, nn.Sequential):
        return [(None, None, model)]
    out = []
    for key, m in model._modules.items():
        if isinstance(m, nn.Sequential):
            out += _slots(m)
        else:
            out.append((model._modules, key, m))
    return out


class EventChain:
    """Compiled event-mode stepping of a model (see the module docstring).

    Args:
        model: an ``nn.Sequential`` (or a single module). Event layers must be in ``"event"``
            execution to be lowered; others (and modules without a fuser) run as module calls.
        strict: raise TypeError with the reason unless every module lowers
            (:func:`why_not_fusable`).

    Shape: one time step ``(B, ...)`` per call; :meth:`reset` (or :func:`braingate.reset`)
    between streams.
    """

    def __init__(self, model: nn.Module, *, strict: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        reason = why_not_fusable(model) if strict else ""
        if reason:
            raise TypeError(f"cannot fuse this model: {reason}")
        self.model = model
        self._plan: list | None = None  # _Compiled and nn.Module entries, in order
        self._single: tuple | None = None  # (step, desc, f, g) when the plan is one flat call
        self._shape: torch.Size | None = None  # (B, ...) of the planned input
        self.dtype: torch.dtype | None = None
        self._pending, self._due = 0, 1  # steps not yet handed to the steppers
        self._after_reset = False
        self._listener = weakref.WeakMethod(self._before_reset)
        self._steppers: list = []

    # -- stepping -------------------------------------------------------------------------------
    def __call__(self, x: Tensor) -> Tensor:
        _ACQUIRE()  # threads on one chain (or its layers) are serialised; acquire / release
        try:  # directly: half the cost of a with-statement on every step
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
            return self._run(x if x.is_contiguous() else x.contiguous())
        finally:
            _RELEASE()

    def _run(self, x: Tensor) -> Tensor:
        if self._after_reset:  # the layers' first step since a reset: no longer fresh
            for s in self._steppers:
                s.started()
            self._after_reset = False
        B = x.shape[0]
        single = self._single
        if single is not None:  # the whole model in one compiled call, flat output
            step, desc, f, g = single
            h = torch.from_numpy(step(x.data_ptr(), B, desc, f, g))
        else:
            plan = self._plan
            h = x
            for seg in plan:
                h = self._exec(seg, h, B) if type(seg) is _Compiled else seg(h)
        self._pending += 1
        if self._pending >= self._due:
            self._flush_steps()
        return h

    def _exec(self, seg: _Compiled, h: Tensor, B: int) -> Tensor:
        """One compiled segment on ``h`` (made C-contiguous in the chain's dtype first: the kernel
        reads it by address)."""
        if type(h) is not Tensor or h.dtype is not self.dtype or not h.is_contiguous():
            h = torch.as_tensor(h).to(self.dtype).contiguous()
        if h.numel() != B * seg.in_size or not h.is_cpu or h.requires_grad:
            raise ValueError(
                f"a compiled segment expects {seg.in_size} features per sample, got "
                f"{tuple(h.shape)}; the model's modules do not fit together"
            )
        out = torch.from_numpy(seg.step(h.data_ptr(), B, seg.desc, *self._types))
        return out.view(B, *seg.out_shape) if len(seg.out_shape) != 1 else out

    def _call_checked(self, x) -> Tensor:
        """A first step, a step after a change or reset, or input the fast test did not accept."""
        if type(x) is not Tensor:
            return self.model(x)  # the module path raises the precise error (or copes)
        if (
            x.dim() < 2
            or not x.shape[0]
            or x.dtype not in _WITNESS
            or not x.is_cpu
            or x.layout is not _STRIDED
            or not _kernels.AVAILABLE
        ):
            return self.model(x)  # nothing has run yet: the module path raises the precise error
        x = (x.detach() if x.requires_grad else x).contiguous()
        if (
            self._plan is None
            or x.shape != self._shape
            or x.dtype is not self.dtype  # the kernels read the input at its address
            or not self._still_valid()
        ):
            return self._lower_and_run(x)
        return self._run(x)

    def reset(self) -> None:
        """:func:`braingate.reset` of the model, the lowered modules' part in compiled calls.

        The general path runs instead when the lowered arrays are not all current, or a layer's
        state cannot be zeroed in place.
        """
        with RUNTIME_LOCK:
            for s in self._steppers:
                s.notify()  # chains on these layers (this one too) end their stream
            if (
                self._plan is None
                or not self._still_valid()
                or not all(s.zeroable() for s in self._steppers)
            ):
                reset_model(self.model)
                return
            B = self._shape[0]
            for seg in self._plan:
                if type(seg) is _Compiled:
                    seg.reset(B, seg.desc, *self._types)
                else:
                    reset_model(seg)
            for s in self._steppers:
                s.restarted()

    def _before_reset(self) -> None:
        """Run by a layer's reset (see the steppers' ``listen``): the steps taken so far belong
        to the stream that ends, and the next step is a first one."""
        if self._pending:
            self._flush_steps()
        self._after_reset = True

    def _flush_steps(self) -> None:
        """Hand the steps run since the last flush to the steppers (re-syncs run in place)."""
        due, p = 1 << 62, self._pending
        for s in self._steppers:
            due = min(due, s.advance(p))
        self._pending, self._due = 0, max(1, due)

    # -- lowering -------------------------------------------------------------------------------
    def _lower_and_run(self, x: Tensor) -> Tensor:
        """Lower the model for the batch and per-sample shape of ``x`` while running this step.

        Runs of modules with fusers become compiled segments; a module without one (or whose
        fuser declines) is called as a module, and lowering resumes after it with the shape it
        produced."""
        self._flush_steps()
        self._plan, self._single = None, None  # until the lowering below completes
        B, dtype = x.shape[0], x.dtype
        self._types = _WITNESS[dtype]
        self.dtype = dtype
        plan, run, keep, watch, tracked, epochs, ptrs, steppers = [], [], [], [], [], [], [], []
        shape, h = tuple(x.shape[1:]), x

        run_out: list = [None]  # per-sample shape after the open run (reshapes included)

        def close_run(h: Tensor) -> Tensor:
            if run:
                seg = _compile(run, run_out[0], B, self._types)
                plan.append(seg)
                run.clear()
                h = self._exec(seg, h, B)
            return h

        slots = _slots(self.model)
        # net[2] = other, net.append(...), del net[i]: lowered again (one list compare per
        # container; modules compare by identity)
        containers = {id(c): (c, dict(c)) for c, _, _ in slots if c is not None}
        for _, _, m in slots:
            # after a module that returned something else than a tensor (snntorch's
            # Leaky(output=True) returns (spikes, membrane)), the rest runs as module calls
            fuser = fuser_for(m) if shape is not None else None
            row = fuser(m, B, dtype, shape) if fuser is not None else None
            if not isinstance(row, Row) or (not row.op and not run):
                h = close_run(h)  # not lowered (or a bare reshape): a module call
                plan.append(m)
                h = m(h)
                shape = tuple(h.shape[1:]) if type(h) is Tensor else None
                continue
            if row.op:
                run.append(row)
            keep += row.keep
            watch += row.watch
            tracked += row.tracked
            epochs += row.epochs
            ptrs += row.ptrs
            if row.stepper is not None:
                steppers.append(row.stepper)
                row.stepper.listen(self._listener)
            shape = tuple(row.out_shape)
            run_out[0] = shape
        h = close_run(h)
        self._plan = plan
        one = plan[0] if len(plan) == 1 and type(plan[0]) is _Compiled else None
        flat = one is not None and len(one.out_shape) == 1
        self._single = (one.step, one.desc, *self._types) if flat else None
        self._shape = x.shape
        self._keep = keep
        self._ptrs = ptrs
        # C-level checks (map over builtins, no Python frame per entry): every watched mapping
        # still holds the object lowered, every container the modules it had
        self._watch_dicts, self._watch_keys, self._watch_objs = list(zip(*watch)) or ((), (), ())
        self._containers = [c for c, _ in containers.values()]
        self._container_snaps = [snap for _, snap in containers.values()]
        self._tracked = tracked
        self._steppers = steppers
        self._version_sum = version_sum(tracked)
        by_key: dict = {}
        for d, k in epochs:
            by_key.setdefault(k, []).append(d)
        # counters only grow, so a sum moves exactly when one of them does: C-level sums
        self._epoch_sums = [
            (operator.itemgetter(k), ds, sum(d[k] for d in ds)) for k, ds in by_key.items()
        ]
        self._optimizer_steps = optimizer_steps()
        for s in steppers:  # this step ran: the layers' streams started
            s.started()
        self._after_reset = False
        self._pending, self._due = 1, 1
        self._flush_steps()
        return h

    def _still_valid(self) -> bool:
        """Nothing the lowered arguments depend on changed.

        Plain loops with early exit: this runs every step, and at batch 1 it costs more than the
        arithmetic of a sparse step. Version counters and epochs only ever grow, so their sums
        change exactly when one of them does.
        """
        if self._plan is None:
            return False
        if not all(map(_IS, map(_GET, self._watch_dicts, self._watch_keys), self._watch_objs)):
            return False
        for t, ptr in self._ptrs:
            if t.data_ptr() != ptr:
                return False
        # modules compare by identity (nn.Module defines no __eq__)
        if not all(map(_EQ, self._containers, self._container_snaps)):
            return False
        for getter, dicts, total in self._epoch_sums:
            if sum(map(getter, dicts)) != total:
                return False
        return (
            version_sum(self._tracked) == self._version_sum
            and optimizer_steps() == self._optimizer_steps
        )

    @property
    def compiled_segments(self) -> int:
        """Compiled calls per step in the current lowering (0 before the first step)."""
        return sum(type(s) is _Compiled for s in self._plan or ())


def _compile(rows: list[Row], out_shape: tuple | None, B: int, types: tuple) -> _Compiled:
    width = max(len(r.values) for r in rows)
    desc = np.zeros((len(rows), width), np.int64)
    for i, r in enumerate(rows):
        desc[i, : len(r.values)] = r.values
    step, reset = chain_kernels(tuple(r.op for r in rows))
    # the entry points for exactly the argument types _exec / reset pass (no per-call dispatch)
    step = entry_point(step, 0, B, desc, *types)
    reset = entry_point(reset, B, desc, *types)
    out = tuple(rows[-1].out_shape) if out_shape is None else tuple(out_shape)
    return _Compiled(tuple(rows), desc, step, reset, int(rows[0].values[0]), out)


def why_not_fusable(model: nn.Module) -> str:
    """Empty string if every module of ``model`` has a compiled op (event layers in ``"event"``
    execution), else the first reason one does not. Features flowing between modules that
    declare ``in_features`` / ``out_features`` are checked too (lowering checks the rest)."""
    if not _kernels.AVAILABLE:
        return "the compiled kernels (numba) are not available"
    if not event_modules(model):
        return "it has no event layer"
    width = None
    for key, m in _named_slots(model):
        if fuser_for(m) is None:
            return f"module {key} ({type(m).__name__}) has no compiled op"
        if isinstance(m, nn.Dropout) and m.training:
            return f"module {key} is a Dropout in training mode"
        if getattr(m, "execution", "event") != "event":
            return f"layer {key} has execution={m.execution!r}, not 'event'"
        n, out = getattr(m, "in_features", None), getattr(m, "out_features", None)
        if isinstance(n, int) and isinstance(out, int):
            if width is not None and width != n:
                return f"layer {key} takes {n} features but receives {width}"
            width = out
        elif not isinstance(m, _SHAPE_PRESERVING):
            width = None
    return ""


_SHAPE_PRESERVING = (nn.ReLU, nn.Identity, nn.Dropout)


def _named_slots(model: nn.Module):
    for container, key, m in _slots(model):
        yield (key if container is not None else type(m).__name__), m


def compile_events(model: nn.Module, *, strict: bool = False) -> EventChain:
    """An :class:`EventChain` for ``model``: one compiled call per step for every run of modules
    that lower to compiled ops, module calls for the rest (``chain.compiled_segments`` after the
    first step says how many compiled calls a step takes). ``strict=True`` raises TypeError
    with the reason unless all of it lowers."""
    return EventChain(model, strict=strict)
