"""Sigma-delta encoding with residual carry: send a coordinate when it moved more than θ."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["refuse_nonfinite", "sigma_delta"]


def sigma_delta(
    x: Tensor,
    ref: Tensor,
    threshold: float | Tensor,
    active: Tensor | None = None,
    *,
    surrogate: str | None = None,
    width: float | Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One sigma-delta step against the last transmitted value.

    .. math::
        Δ = x - \hat x,\quad E = \{i : |Δ_i| > θ\},\quad \hat x_E \leftarrow x_E

    The reference is the *last sent* value, so a change smaller than θ is not lost: it stays in
    ``x - x̂`` until it crosses θ. Invariant after the step: ``|x - x̂|∞ ≤ θ`` (on active units).

    Training through events: with ``surrogate`` set (or automatically, with the
    ``"fast_sigmoid"`` surrogate, when gradients are enabled and ``threshold`` is a tensor that
    requires grad) the step runs :func:`~braingate.functional.surrogate.sigma_delta_surrogate`:
    same forward values, a straight-through reconstruction and surrogate derivatives for θ and
    the events, which are then returned as a float 0/1 tensor.

    Args:
        x: current value, ``(..., n)``.
        ref: last transmitted value ``x̂``, same shape.
        threshold: θ ≥ 0, a scalar or a tensor broadcastable to ``x`` (per unit).
        active: optional bool mask; inactive coordinates never fire and keep their reference.
        surrogate: a name from :data:`~braingate.functional.surrogate.SURROGATES`, or None.
        width: surrogate width (default: scale-aware, see ``surrogate_width``).

    Returns:
        ``(delta, events, new_ref)``: the transmitted change (zero off events), the event mask
        (bool; float with a surrogate) and the new reference.
    """
    if surrogate is None and (
        isinstance(threshold, Tensor) and threshold.requires_grad and torch.is_grad_enabled()
    ):
        surrogate = "fast_sigmoid"
    if surrogate is not None:
        from braingate.functional.surrogate import sigma_delta_surrogate

        return sigma_delta_surrogate(x, ref, threshold, active, surrogate=surrogate, width=width)
    diff = x - ref
    events = diff.abs() > threshold
    if active is not None:
        events = events & active
    delta = diff * events
    new_ref = ref.where(~events, x)
    return delta, events, new_ref


def refuse_nonfinite(x: Tensor) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or ±inf: the one policy of every event path
    (module, compiled chain, torch reference) and of dense mode — the step is refused and no
    state changes, so one bad step never poisons later ones. On CUDA the check is asynchronous
    (no device sync); the error then surfaces at the next synchronisation."""
    from braingate.functional._kernels import NONFINITE

    if x.is_cuda:
        torch._assert_async(torch.isfinite(x).all(), NONFINITE)
    elif x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(NONFINITE)
