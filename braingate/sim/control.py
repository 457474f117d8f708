"""Set execution modes and reset state across a whole model."""

from __future__ import annotations

from torch import nn

from braingate.nn._validate import execution_mode
from braingate.nn.base import EventModule

__all__ = ["execution", "reset"]


def _event_modules(model: nn.Module):
    """Event layers and braingate modules that expose an ``execution`` mode of their own."""
    return [
        m
        for m in model.modules()
        if isinstance(m, EventModule)
        or (
            type(m).__module__.startswith("braingate")
            and isinstance(type(m).__dict__.get("execution"), property)
        )
    ]


class execution:
    """Set ``execution`` on every braingate layer of ``model``; restore on ``__exit__``.

    ``bg.execution(model, "event")`` applies at once; ``with bg.execution(model, "event"):``
    restores the previous modes when the block ends.
    """

    def __init__(self, model: nn.Module, mode: str) -> None:
        execution_mode(mode)
        self._saved = [(m, m.execution) for m in _event_modules(model)]
        for m, _ in self._saved:
            m.execution = mode

    def __enter__(self) -> execution:
        return self

    def __exit__(self, *exc) -> None:
        for m, mode in self._saved:
            m.execution = mode


def reset(model: nn.Module) -> None:
    """Clear the state of every stateful module in ``model`` (nested ones included).

    Calls ``reset()`` on every event layer and braingate module and ``reset_mem()`` on each snntorch neuron *instance*
    (snntorch's own ``reset_hidden`` is class-wide: it would reset every network's neurons).
    """
    for m in model.modules():
        own = isinstance(m, EventModule) or type(m).__module__.startswith("braingate")
        if own and callable(getattr(m, "reset", None)):
            m.reset()
        elif type(m).__module__.startswith("snntorch") and hasattr(m, "reset_mem"):
            m.reset_mem()
