"""Sigma-delta encoding with residual carry: send a coordinate when it moved more than θ."""

from __future__ import annotations

from torch import Tensor

__all__ = ["sigma_delta"]


def sigma_delta(
    x: Tensor, ref: Tensor, threshold: float | Tensor, active: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One sigma-delta step against the last transmitted value.

    .. math::
        Δ = x - \hat x,\quad E = \{i : |Δ_i| > θ\},\quad \hat x_E \leftarrow x_E

    The reference is the *last sent* value, so a change smaller than θ is not lost: it stays in
    ``x - x̂`` until it crosses θ. Invariant after the step: ``|x - x̂|∞ ≤ θ`` (on active units).

    Args:
        x: current value, ``(..., n)``.
        ref: last transmitted value ``x̂``, same shape.
        threshold: θ ≥ 0, a scalar or a tensor broadcastable to ``x`` (per unit).
        active: optional bool mask; inactive coordinates never fire and keep their reference.

    Returns:
        ``(delta, events, new_ref)``: the transmitted change (zero off events), the bool event
        mask and the new reference.
    """
    diff = x - ref
    events = diff.abs() > threshold
    if active is not None:
        events = events & active
    delta = diff * events
    new_ref = ref.where(~events, x)
    return delta, events, new_ref
