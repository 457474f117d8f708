"""Pure functions: rank ↔ block masks, soft masks and the straight-through combination."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "block_ends",
    "blocks_to_unit_mask",
    "ranks_to_blocks",
    "soft_unit_mask",
    "straight_through",
]


def block_ends(rank: int, blocks: int) -> Tensor:
    """End index (exclusive) of each of ``blocks`` contiguous, near-equal blocks of ``rank`` units.

    .. math:: e_b = \\lfloor (b+1) R / K \\rfloor, \\quad b = 0..K-1

    Shape: ``(blocks,)`` LongTensor, strictly increasing, last entry ``rank``.
    """
    if not 1 <= blocks <= rank:
        raise ValueError(f"blocks={blocks} must be in [1, rank={rank}]")
    return torch.div(torch.arange(1, blocks + 1) * rank, blocks, rounding_mode="floor")


def ranks_to_blocks(ranks: Tensor, ends: Tensor) -> Tensor:
    """Fewest active leading blocks whose units cover each requested rank.

    Shape: ranks ``(B,)`` -> ``(B,)`` LongTensor in ``[0, K]`` (0 for rank 0).
    """
    idx = torch.searchsorted(ends.to(ranks.device), ranks.clamp(min=0), right=False)
    return torch.where(ranks > 0, idx + 1, torch.zeros_like(idx)).clamp(max=ends.numel())


def blocks_to_unit_mask(
    n_blocks: Tensor, ends: Tensor, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Unit mask ``g[i, j] = 1`` iff unit ``j`` lies in one of sample ``i``'s first ``n_blocks[i]`` blocks.

    Shape: ``(B,)`` -> ``(B, R)`` with ``R = ends[-1]``.
    """
    ends = ends.to(n_blocks.device)
    pad = torch.cat([ends.new_zeros(1), ends])
    active_units = pad[n_blocks.clamp(0, ends.numel())]
    units = torch.arange(int(ends[-1]), device=n_blocks.device)
    return (units[None, :] < active_units[:, None]).to(dtype)


def soft_unit_mask(soft_rank: Tensor, rank: int, temperature: float) -> Tensor:
    """Differentiable prefix mask: :math:`\\tilde g_{ij} = \\sigma((\\rho_i - j - \\tfrac12)/\\tau)`.

    Shape: ``(B,)`` -> ``(B, R)``.
    """
    units = torch.arange(rank, device=soft_rank.device, dtype=soft_rank.dtype)
    return torch.sigmoid((soft_rank[:, None] - units[None, :] - 0.5) / temperature)


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Forward value ``hard``, gradient of ``soft``: :math:`g = h + \\tilde g - \\mathrm{sg}(\\tilde g)`."""
    return hard + soft - soft.detach()
