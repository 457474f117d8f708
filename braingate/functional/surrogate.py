"""Surrogate gradients for the event threshold: learn θ through a hard ``|Δ| > θ`` test.

The forward pass is the exact sigma-delta step; only the backward pass is replaced. The
reconstruction ``x̂`` passes the gradient straight through to ``x`` (it differs from ``x`` by a
residual ``|r| ≤ θ``), and the step function ``H(|Δ| − θ)`` gets the derivative of a smooth
surrogate, so both the task loss (through the residual) and an activity penalty (through the
event count) reach θ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "SURROGATES",
    "sigma_delta_surrogate",
    "softplus_inverse",
    "surrogate_names",
    "surrogate_width",
]


def _fast_sigmoid(u: Tensor, w: Tensor) -> Tensor:
    """Derivative of a fast sigmoid, normalised to unit area: ``1 / (2w (1 + |u|/w)²)``."""
    return 0.5 / (w * (1.0 + u.abs() / w) ** 2)


def _triangle(u: Tensor, w: Tensor) -> Tensor:
    """Triangle of half-width ``w`` and unit area: ``max(0, 1 − |u|/w) / w``."""
    return (1.0 - u.abs() / w).clamp_min(0.0) / w


#: The registry of surrogate derivatives ``σ'(u; w)`` of the step ``H(u)``, each of unit area.
SURROGATES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "fast_sigmoid": _fast_sigmoid,
    "triangle": _triangle,
}


def surrogate_names() -> tuple[str, ...]:
    """Registered surrogate names."""
    return tuple(sorted(SURROGATES))


def _lookup(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    if name not in SURROGATES:
        raise ValueError(f"surrogate={name!r} is unknown; pass one of {surrogate_names()}")
    return SURROGATES[name]


def surrogate_width(threshold: Tensor, rel: float = 0.5, floor: float = 1e-2) -> Tensor:
    """Default surrogate width: ``max(rel·θ, floor)`` per unit (scale-aware, never zero)."""
    return (rel * threshold.detach()).clamp_min(floor)


class _SigmaDeltaST(torch.autograd.Function):
    """Sigma-delta step with a straight-through reconstruction and a surrogate event derivative."""

    @staticmethod
    def forward(ctx, x, ref, threshold, width, active, name):
        diff = x - ref
        u = diff.abs() - threshold
        events = u > 0
        if active is not None:
            events = events & active
        new_ref = ref.where(~events, x)
        ctx.save_for_backward(diff, u, width, active if active is not None else diff.new_ones(()))
        ctx.name, ctx.has_active, ctx.th_shape = name, active is not None, threshold.shape
        return new_ref, events.to(x.dtype)

    @staticmethod
    def backward(ctx, g_ref, g_ev):
        diff, u, width, active = ctx.saved_tensors
        sg = _lookup(ctx.name)(u, width)
        if ctx.has_active:
            sg = sg * active
            g_ref = g_ref * active
        sign = diff.sign()
        g_x = g_ref + g_ev * sign * sg
        g_r = -g_ev * sign * sg
        g_th = -(g_ref * diff + g_ev) * sg
        g_th = g_th.sum_to_size(ctx.th_shape) if ctx.th_shape != g_th.shape else g_th
        return g_x, g_r, g_th, None, None, None


def sigma_delta_surrogate(
    x: Tensor,
    ref: Tensor,
    threshold: float | Tensor,
    active: Tensor | None = None,
    *,
    surrogate: str = "fast_sigmoid",
    width: float | Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Sigma-delta step whose events and threshold carry surrogate gradients.

    Forward (identical to :func:`~braingate.functional.events.sigma_delta`):

    .. math::
        Δ = x - \hat x,\quad e_i = H(|Δ_i| - θ_i),\quad \hat x' = \hat x + e ⊙ Δ

    Backward, with ``σ'`` the surrogate derivative of ``H`` (unit area, width ``w``):

    .. math::
        \frac{∂\hat x'}{∂x} = 1,\quad
        \frac{∂\hat x'_i}{∂θ_i} = -Δ_i σ'(|Δ_i| - θ_i),\quad
        \frac{∂e_i}{∂θ_i} = -σ'(|Δ_i| - θ_i),\quad
        \frac{∂e_i}{∂Δ_i} = \mathrm{sign}(Δ_i) σ'(|Δ_i| - θ_i)

    Args:
        x: current value ``(..., n)``. ref: last transmitted value, same shape.
        threshold: θ ≥ 0, scalar or per unit; a tensor requiring grad receives its gradient.
        active: optional bool mask; inactive units never fire, keep their reference and pass no
            gradient.
        surrogate: a name from :data:`SURROGATES`.
        width: surrogate width ``w > 0``; default :func:`surrogate_width` of θ.

    Returns:
        ``(delta, events, new_ref)`` like ``sigma_delta``, except that ``events`` is a float
        0/1 tensor carrying the surrogate gradient (its sum is a differentiable event count).
    """
    _lookup(surrogate)
    th = torch.as_tensor(threshold, dtype=x.dtype, device=x.device)
    w = surrogate_width(th) if width is None else torch.as_tensor(width, dtype=x.dtype)
    if bool((w <= 0).any()):
        raise ValueError(f"width={width!r} must be > 0; pass e.g. width=0.1 or None")
    new_ref, events = _SigmaDeltaST.apply(x, ref, th, w.to(x.device), active, surrogate)
    return new_ref - ref, events, new_ref


def softplus_inverse(theta: Tensor, floor: float = 1e-4) -> Tensor:
    r"""Raw parameter ``ρ`` with ``softplus(ρ) = θ`` (θ clamped to ``floor`` so ρ is finite).

    .. math:: ρ = \log(e^{θ} - 1)

    Learnable thresholds are stored as ``ρ`` and used as ``θ = softplus(ρ) ≥ 0``.
    """
    theta = theta.detach().clamp_min(floor)
    return torch.where(theta > 20, theta, torch.log(torch.expm1(theta)))
