"""Pure low-rank products used by the conditional variants (shared or per-sample factors)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["lowrank_apply"]


def lowrank_apply(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``B (A x)`` with shared or per-sample factors.

    .. math:: y_{k} = B_k A_k x_k

    Args:
        x: ``(B, *, n)`` (or ``(*, n)`` when the factors are shared).
        a: ``(r, n)`` shared or ``(B, r, n)`` per sample.
        b: ``(m, r)`` shared or ``(B, m, r)`` per sample.

    Returns:
        ``(B, *, m)``.
    """
    if a.dim() == 2:
        return F.linear(F.linear(x, a), b)
    if x.shape[0] != a.shape[0]:
        raise ValueError(
            f"per-sample adapter factors for {a.shape[0]} samples but x has batch {x.shape[0]}; "
            "pass one condition per sample (or a single one for all)"
        )
    z = torch.einsum("b...i,bri->b...r", x, a)
    return torch.einsum("b...r,bor->b...o", z, b)
