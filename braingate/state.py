"""Explicit state of the event path, as NamedTuples (the functional layer passes them around)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["COUNT_FIELDS", "EventState", "StepCounts"]


class EventState(NamedTuple):
    """State of one event-driven low-rank layer, per sample.

    Attributes:
        x_hat: last transmitted input, ``(B, n)``.
        z: latent accumulator ``Vᵀ·x_hat`` for the active rank units, ``(B, R)``.
        z_hat: last transmitted latent, ``(B, R)``.
        y: output without bias, ``U·diag(s⊙g)·z_hat``, ``(B, m)``.
        gate: rank units that were active at the last step, ``(B, R)`` bool.
    """

    x_hat: Tensor
    z: Tensor
    z_hat: Tensor
    y: Tensor
    gate: Tensor

    @classmethod
    def zeros(cls, batch: int, n: int, m: int, gate: Tensor, dtype, device) -> EventState:
        """The state of a layer that has seen nothing: all zeros, consistent with ``gate``."""
        z = torch.zeros(batch, gate.shape[-1], dtype=dtype, device=device)
        return cls(
            torch.zeros(batch, n, dtype=dtype, device=device),
            z,
            z.clone(),
            torch.zeros(batch, m, dtype=dtype, device=device),
            gate.expand(batch, -1).clone(),
        )


#: Per-sample counters of one step, in the column order of :class:`StepCounts` arrays.
COUNT_FIELDS = ("input_events", "latent_events", "synops", "gate_ops", "active_rank")


class StepCounts(NamedTuple):
    """What one event step did, per sample (each field ``(B,)``, integer valued).

    ``synops = input_events·active_rank + latent_events·m`` (DESIGN §2); ``gate_ops`` counts the
    extra work of blocks switching on (``(n + m)`` per unit) or off (``m`` per unit).
    """

    input_events: Tensor
    latent_events: Tensor
    synops: Tensor
    gate_ops: Tensor
    active_rank: Tensor
