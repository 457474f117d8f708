"""``RankScheduler``: the base class, its registry (``REGISTRY``), and the by-name factory.

``RankScheduler("energy_aware", r_min=4, r_max=64)`` builds the registered subclass;
``class Mine(RankScheduler)`` with a ``schedule_rank(complexity_scores, budget=None, **kw)``
method plugs into any layer that takes ``scheduler=`` (no ``super().__init__()`` needed).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from braingate._registry import Registry

__all__ = ["REGISTRY", "RankScheduler", "register_scheduler", "scheduler_names"]

REGISTRY: Registry[type[RankScheduler]] = Registry("scheduler")


def register_scheduler(name: str):
    """Class decorator: register a ``RankScheduler`` subclass under ``name``.

    A name already taken raises ``ValueError``; ``RankScheduler(name, ...)`` then builds it.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} must be a non-empty string such as 'my_scheduler'")

    def deco(cls: type[RankScheduler]) -> type[RankScheduler]:
        if not (isinstance(cls, type) and issubclass(cls, RankScheduler)):
            raise TypeError(f"{cls!r} is not a RankScheduler subclass")
        REGISTRY.add(name, cls)
        cls.name = name
        return cls

    return deco


def scheduler_names() -> list[str]:
    """Registered scheduler names, sorted."""
    return sorted(REGISTRY.names())


def check_rank_range(r_min: Any, r_max: Any) -> tuple[int, int]:
    """Validate ``1 <= r_min <= r_max`` (ints)."""
    for key, val in (("r_min", r_min), ("r_max", r_max)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise ValueError(f"{key}={val!r} must be a positive int")
    if r_min > r_max:
        raise ValueError(f"r_min={r_min} > r_max={r_max}; pass r_min <= r_max")
    return r_min, r_max


def check_budget(budget: Any) -> Tensor | float | None:
    """Validate an energy budget (mJ per sample): None, a number >= 0 or a tensor >= 0."""
    if budget is None:
        return None
    if isinstance(budget, Tensor):
        if not torch.isfinite(budget).all() or (budget < 0).any():
            raise ValueError(
                "budget tensor has negative or non-finite entries; pass mJ per sample >= 0"
            )
        return budget
    if not isinstance(budget, (int, float)) or isinstance(budget, bool) or not budget >= 0:
        raise ValueError(
            f"budget={budget!r} must be a non-negative energy in mJ per sample (or None)"
        )
    return float(budget)


class _SchedulerMeta(type):
    """Makes ``RankScheduler(name, **kw)`` a factory while subclasses construct normally."""

    def __call__(cls, *args: Any, **kw: Any):
        if cls is RankScheduler:
            if not args or not isinstance(args[0], str):
                raise TypeError(
                    "RankScheduler is abstract; build one by name, e.g. "
                    "RankScheduler('energy_aware', r_min=4, r_max=64); "
                    f"known: {', '.join(scheduler_names())}"
                )
            return REGISTRY.get(args[0])(*args[1:], **kw)
        return super().__call__(*args, **kw)


class RankScheduler(metaclass=_SchedulerMeta):
    """Maps per-sample complexity scores to per-sample ranks.

    Subclasses implement :meth:`schedule_rank`. The layer passes context as keywords:
    ``candidates`` (K,) allowed ranks (block ends, ascending), ``energy`` (K,) per-sample mJ
    at each candidate, ``singular_values`` (R,), ``layer_dims``; a scheduler may ignore them.

    Calling ``RankScheduler(name, **kw)`` builds the registered scheduler ``name``.
    """

    name = "base"
    r_min: int = 1
    r_max: int = 1

    def schedule_rank(
        self, complexity_scores: Tensor, budget: Any = None, **kw: Any
    ) -> Tensor | int:
        """Return ranks: a LongTensor ``(B,)`` or one int for the whole batch."""
        raise NotImplementedError(f"{type(self).__name__} must implement schedule_rank")

    def __call__(self, complexity_scores: Tensor, budget: Any = None, **kw: Any) -> Tensor | int:
        return self.schedule_rank(complexity_scores, budget=budget, **kw)

    def reset(self) -> None:
        """Clear any closed-loop state (no-op by default)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(r_min={getattr(self, 'r_min', None)}, r_max={getattr(self, 'r_max', None)})"
