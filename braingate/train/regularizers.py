"""Energy / complexity and activity regularisers (differentiable)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["activity_penalty", "energy_penalty", "event_rate", "model_energy_penalty"]


def energy_penalty(
    rank: Tensor, layer_dims: tuple[int, int], alpha: float = 1.0, beta: float = 0.1
) -> Tensor:
    """ADLRNS complexity penalty, mean over samples.

    .. math::
        \\mathcal E = \\alpha\\,\\frac{\\mathrm{FLOPs}(r)}{\\mathrm{FLOPs}_{full}}
                    + \\beta\\,\\frac{\\mathrm{Mem}(r)}{\\mathrm{Mem}_{full}}, \\quad
        \\mathrm{FLOPs}(r) = 2r(n+m) + r + m, \\; \\mathrm{Mem}(r) = r(n+m+1) + m

    against a dense layer (``2nm + m`` FLOPs, ``nm + m`` parameters).

    Args:
        rank: per-sample (soft or straight-through) ranks ``(B,)``.
        layer_dims: ``(n, m)``.
    Returns: scalar tensor (differentiable in ``rank``).
    """
    n, m = layer_dims
    r = rank.float()
    flops = (2 * r * (n + m) + r + m) / (2 * n * m + m)
    mem = (r * (n + m + 1) + m) / (n * m + m)
    return (alpha * flops + beta * mem).mean()


def model_energy_penalty(model: nn.Module, alpha: float = 1.0, beta: float = 0.1) -> Tensor:
    """Mean :func:`energy_penalty` over the model's dynamic layers after a forward (0 if none)."""
    terms = [
        energy_penalty(mod.last_soft_rank, (mod.in_features, mod.out_features), alpha, beta)
        for mod in model.modules()
        if getattr(mod, "last_soft_rank", None) is not None
    ]
    return torch.stack(terms).mean() if terms else torch.zeros(())


def event_rate(xs: Tensor, threshold: float = 0.0, temperature: float = 0.05) -> Tensor:
    """Differentiable fraction of coordinates that would send an event, for a stream.

    .. math:: \\rho = \\mathrm{mean}\\;\\sigma\\big((|x_t - x_{t-1}| - \\theta)/\\tau\\big), \\; x_{-1} = 0

    Shape: ``xs (T, B, ...)`` -> scalar.
    """
    if xs.dim() < 2:
        raise ValueError(f"xs has shape {tuple(xs.shape)}; pass a time-first stream (T, B, ...)")
    delta = torch.diff(xs, dim=0, prepend=torch.zeros_like(xs[:1]))
    return torch.sigmoid((delta.abs() - threshold) / temperature).mean()


def activity_penalty(xs: Tensor, kind: str = "l1") -> Tensor:
    """Activity penalty on a time-first stream of activations ``(T, B, ...)``.

    ``kind="l1"``: mean :math:`|x_t - x_{t-1}|` (the sigma-delta event volume);
    ``kind="rate"``: :func:`event_rate` with θ = 0.
    """
    if kind == "l1":
        return torch.diff(xs, dim=0, prepend=torch.zeros_like(xs[:1])).abs().mean()
    if kind == "rate":
        return event_rate(xs)
    raise ValueError(f"kind={kind!r} is unknown; known: l1, rate")
