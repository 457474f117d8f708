"""Block masks over the rank: which subspace blocks are switched on, per sample."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["block_importance", "blocks_to_units", "first_k_blocks", "straight_through"]


def blocks_to_units(block_mask: Tensor, rank: int) -> Tensor:
    """Expand a ``(..., blocks)`` mask to ``(..., rank)``: every unit of a block shares its gate."""
    blocks = block_mask.shape[-1]
    return block_mask.repeat_interleave(rank // blocks, dim=-1)


def block_importance(s: Tensor, blocks: int) -> Tensor:
    """Energy ``Σ s²`` captured by each block, ``(blocks,)``."""
    return s.detach().pow(2).reshape(blocks, -1).sum(-1)


def first_k_blocks(importance: Tensor, k: int) -> Tensor:
    """Bool ``(blocks,)`` mask of the ``k`` most important blocks (ties: lower index first)."""
    order = torch.argsort(-importance, stable=True)
    mask = torch.zeros_like(importance, dtype=torch.bool)
    mask[order[:k]] = True
    return mask


def straight_through(soft: Tensor, hard: Tensor) -> Tensor:
    """Forward ``hard``, backward the gradient of ``soft`` (straight-through estimator)."""
    return hard.to(soft.dtype) + soft - soft.detach()
