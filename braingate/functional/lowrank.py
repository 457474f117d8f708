"""Dense low-rank products ``U·diag(s⊙g)·Vᵀ`` and their truncated-SVD factorisation."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["lowrank_linear", "masked_weight", "orthonormal_", "svd_factorize"]


def lowrank_linear(
    x: Tensor,
    U: Tensor,
    s: Tensor,
    V: Tensor,
    bias: Tensor | None = None,
    gate: Tensor | None = None,
) -> Tensor:
    r"""Dense (reference) path of a gated low-rank layer.

    .. math:: y = U\,\mathrm{diag}(s \odot g)\,V^\top x + b

    Args:
        x: input ``(..., n)``; any leading dims (time-first ``(T, B, n)`` is one batched GEMM).
        U, s, V: factors ``(m, R)``, ``(R,)``, ``(n, R)``.
        bias: ``(m,)`` or None.
        gate: rank mask ``(R,)`` or per sample ``(B, R)`` (broadcast against the leading dims of
            ``x``); bool or float (soft/straight-through masks keep their gradient).

    Returns:
        ``(..., m)``.
    """
    scale = s if gate is None else s * gate
    return torch.nn.functional.linear(x @ V * scale, U, bias)


def masked_weight(U: Tensor, s: Tensor, V: Tensor, gate: Tensor | None = None) -> Tensor:
    """``U·diag(s⊙g)·Vᵀ``: ``(m, n)`` for a shared gate, ``(B, m, n)`` for a per-sample one."""
    scale = s if gate is None else s * gate
    return (U * scale.unsqueeze(-2)) @ V.t()


def orthonormal_(t: Tensor) -> Tensor:
    """Fill ``t`` in place with orthonormal columns (``nn.init.orthogonal_``), drawn and factored
    in at least float32 (torch has no CPU QR for bfloat16 / half) and copied in; returns ``t``."""
    wide = torch.promote_types(t.dtype, torch.float32)
    q = torch.nn.init.orthogonal_(torch.empty(t.shape, dtype=wide, device=t.device))
    with torch.no_grad():
        return t.copy_(q)


def svd_factorize(weight: Tensor, rank: int) -> tuple[Tensor, Tensor, Tensor, float]:
    r"""Truncated SVD of a ``(m, n)`` weight: the best rank-``R`` approximation (Eckart–Young).

    Returns:
        ``(U (m,R), s (R,), V (n,R), rel_error)`` with
        ``rel_error = ‖W − U diag(s) Vᵀ‖_F / ‖W‖_F`` (0 for a zero weight).
    """
    w = weight.detach().to(torch.float64)
    u, sv, vh = torch.linalg.svd(w, full_matrices=False)
    U, s, V = u[:, :rank], sv[:rank], vh[:rank].t()
    total = float(sv.pow(2).sum())
    rel = float(sv[rank:].pow(2).sum() / total) ** 0.5 if total > 0 else 0.0
    dt = weight.dtype
    return U.to(dt).contiguous(), s.to(dt).contiguous(), V.to(dt).contiguous(), rel
