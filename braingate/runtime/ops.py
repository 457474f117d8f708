"""Compiled ops and the modules that lower to them: the two registries of the event runtime.

An :class:`Op` is one compiled step over a flat ``(B, in_size) -> (B, out_size)`` activation,
reading its arrays from one descriptor row (:class:`~braingate.runtime.layout.Layout`). A
*fuser* turns a module into a :class:`Row` of that op for a batch size: the packed values and the
arrays whose addresses they hold. Event layers register a fuser for their type in their own file
(one file plus registrations), elementwise modules (ReLU, Flatten, ...) here or in theirs.

The torch reference of each op is the module's own torch path (``EventModule.reference_step``,
``nn.ReLU.forward``, ...); ``tests/core/test_backends.py`` runs every registered module type
through every backend against it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from torch import nn

from braingate._registry import Registry
from braingate.runtime.layout import Layout

__all__ = [
    "FUSERS",
    "OPS",
    "RUNTIME_LOCK",
    "Op",
    "Row",
    "RunnerStepper",
    "fuser_for",
    "register_fuser",
]

#: Every compiled event step of this process runs under this lock: two threads stepping one
#: model (or one stepper) are serialised, so a re-sync or re-pack in one thread can never free
#: or move arrays a kernel in the other is reading. Uncontended it costs ~0.1 µs per step.
RUNTIME_LOCK = threading.RLock()


class Op(NamedTuple):
    """A compiled op.

    Attributes:
        name: registry key.
        layout: its descriptor row's columns.
        step: numba function ``(h, row, f, g) -> out``: ``h`` the ``(B, in_size)`` input (never
            written unless ``inplace``), ``row`` the int64 descriptor row (also the int64 type witness), ``f`` /
            ``g`` arrays of the float and bool dtypes (type witnesses); ``out`` ``(B, out_size)``.
        reset: numba function ``(B, row, f, g) -> None`` zeroing the op's state, or None.
        inplace: ``step`` may overwrite ``h`` and return it (elementwise ops); the chain hands
            it a copy when ``h`` is the caller's input.
    """

    name: str
    layout: Layout
    step: Callable
    reset: Callable | None = None
    inplace: bool = False


class Row(NamedTuple):
    """One module lowered to an op for a batch size.

    Attributes:
        op: the :class:`Op`'s name; ``""`` for a module that only reshapes (no kernel).
        values: the packed descriptor row (:meth:`Layout.pack`).
        keep: arrays whose addresses ``values`` holds. They must be arrays the runtime
            allocated and owns (numpy buffers, or copies), never views of user-visible tensors:
            a user may move or free those (``share_memory_``, ``set_``, ``del``) at any time.
        in_shape, out_shape: per-sample shapes of the module's input and output.
        watch: ``(mapping, key, obj)``: the row is stale once ``mapping.get(key) is not obj``.
        tracked: tensors whose in-place edits (version counters) make the row stale.
        ptrs: ``(tensor, data_ptr)``: stale once the tensor's storage moved.
        epochs: ``(mapping, key)`` pairs of counters that grow with every configuration change.
        stepper: None, or an object with ``started()`` (first step since pack or reset),
            ``advance(p) -> int`` (``p`` steps ran: bookkeeping such as re-syncs, in place;
            returns how many steps may run before it needs the next call), ``notify_target`` (an
            object with a ``listeners`` list of weak callbacks run before its reset) and
            ``zeroable()``.
    """

    op: str
    values: list
    keep: tuple
    in_shape: tuple = ()
    out_shape: tuple = ()
    watch: tuple = ()
    tracked: tuple = ()
    epochs: tuple = ()
    ptrs: tuple = ()
    stepper: Any = None


class RunnerStepper:
    """Base of a :class:`Row`'s ``stepper``: the hooks every layer runner answers the same way
    (``listeners`` of weak callbacks run by ``notify()`` before a reset, ``zeroable()``).
    Subclasses add ``started``, ``advance`` and ``restarted`` for their runner."""

    __slots__ = ("runner",)

    def listen(self, ref) -> None:
        r = self.runner
        if ref not in r.listeners:
            r.listeners = [w for w in r.listeners if w() is not None] + [ref]

    def notify(self) -> None:
        self.runner.notify()

    def zeroable(self) -> bool:
        return self.runner.zeroable()


#: Compiled ops by name.
OPS: Registry[Op] = Registry("kernel op")

#: Module type -> fuser ``(module, B, dtype, in_shape) -> Row | str``: the module lowered for
#: batch ``B``, float ``dtype`` and per-sample input shape ``in_shape``, or why it cannot be.
FUSERS: Registry[Callable] = Registry("fusable module type")


def register_fuser(module_type: type):
    """Decorator: register the fuser of ``module_type`` (subclasses inherit it)."""
    return FUSERS.register(module_type)


def fuser_for(module: nn.Module) -> Callable | None:
    """The fuser registered for ``module``'s type or its nearest base class, or None."""
    for cls in type(module).__mro__:
        if cls in FUSERS:
            return FUSERS.get(cls)
    return None


def owned(arr: np.ndarray) -> np.ndarray:
    """``arr`` as an array whose buffer the runtime owns (a copy unless it already owns it)."""
    if arr.flags.owndata and arr.flags.c_contiguous:
        return arr
    return np.array(arr, copy=True, order="C")
