"""Pure functions: rank ↔ block ends, realisable ranks and unit masks."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "block_ends",
    "blocks_to_unit_mask",
    "ranks_to_blocks",
    "realisable_ranks",
]


def block_ends(rank: int, blocks: int, first: int | None = None) -> Tensor:
    """End index (exclusive) of each of ``blocks`` contiguous blocks of ``rank`` units.

    Without ``first`` the blocks are near-equal, :math:`e_b = \\lfloor (b+1) R / K \\rfloor`.
    With ``first`` (a layer's ``r_min``) the first block ends exactly there, so the floor is a
    realisable rank, and the other ``K - 1`` blocks split ``[first, R)`` near-equally:
    :math:`e_0 = f`, :math:`e_b = f + \\lfloor b (R - f) / (K - 1) \\rfloor`.

    Args:
        rank: ``R``, the last end.
        blocks: ``K``; ``1 <= K <= R`` (``K <= R - first + 1`` with ``first``).
        first: the first end, ``1 <= first <= R``; with ``K = 1`` it must equal ``R``.

    Shape: ``(blocks,)`` LongTensor, strictly increasing, last entry ``rank``.
    """
    if first is None:
        if not 1 <= blocks <= rank:
            raise ValueError(f"blocks={blocks} must be in [1, rank={rank}]")
        return torch.div(torch.arange(1, blocks + 1) * rank, blocks, rounding_mode="floor")
    if not 1 <= first <= rank:
        raise ValueError(f"first={first} must be in [1, rank={rank}]")
    if not 1 <= blocks <= rank - first + 1 or (blocks == 1 and first != rank):
        raise ValueError(
            f"blocks={blocks} cannot start at first={first} and end at rank={rank}; "
            f"pass 2 <= blocks <= {rank - first + 1} (or blocks=1 with first=rank)"
        )
    if blocks == 1:
        return torch.tensor([rank])
    steps = torch.div(torch.arange(blocks) * (rank - first), blocks - 1, rounding_mode="floor")
    return first + steps


def realisable_ranks(ranks: Tensor, ends: Tensor) -> Tensor:
    """The largest block end not above each rank (the first end for ranks below it).

    Rounding down keeps any cap a scheduler sets; ranks below the first end (a layer's floor)
    go up to it. Shape: ``(B,)`` -> ``(B,)`` LongTensor of entries of ``ends``.
    """
    ends = ends.to(ranks.device)
    idx = torch.searchsorted(ends, ranks, right=True) - 1
    return ends[idx.clamp(0, ends.numel() - 1)]


def ranks_to_blocks(ranks: Tensor, ends: Tensor) -> Tensor:
    """Fewest active leading blocks whose units cover each requested rank.

    Shape: ranks ``(B,)`` -> ``(B,)`` LongTensor in ``[0, K]`` (0 for rank 0).
    """
    idx = torch.searchsorted(ends.to(ranks.device), ranks.clamp(min=0), right=False)
    return torch.where(ranks > 0, idx + 1, torch.zeros_like(idx)).clamp(max=ends.numel())


def blocks_to_unit_mask(
    n_blocks: Tensor, ends: Tensor, dtype: torch.dtype = torch.float32, units: int | None = None
) -> Tensor:
    """Unit mask ``g[i, j] = 1`` iff unit ``j`` lies in one of sample ``i``'s first ``n_blocks[i]`` blocks.

    Shape: ``(B,)`` -> ``(B, R)`` with ``R = units`` (default ``ends[-1]``; units past the last
    end are off).
    """
    ends = ends.to(n_blocks.device)
    pad = torch.cat([ends.new_zeros(1), ends])
    active_units = pad[n_blocks.clamp(0, ends.numel())]
    width = int(ends[-1]) if units is None else units
    idx = torch.arange(width, device=n_blocks.device)
    return (idx[None, :] < active_units[:, None]).to(dtype)
