"""SparseLoRA: LoRA with fixed random masks on A and B (the seed's "sparse LoRA").

.. math:: \\Delta W = s\\, (B \\odot M_B)(A \\odot M_A)

Each mask has exactly ``round(sparsity · numel)`` zeros, drawn once; masked raw entries are set to
zero and get zero gradient (the mask multiplies them in forward), so the sparsity of A and B is kept
through training. Merge is exact. Seeded by ``seed`` (None: torch's global generator).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from braingate.lora.variants.base import LoRAVariant
from braingate.lora.variants.registry import VariantConfig, register_variant

__all__ = ["SparseLoRA", "SparseLoRAConfig", "random_mask"]


@dataclass(frozen=True)
class SparseLoRAConfig(VariantConfig):
    """Fraction of zeros in A and in B, and the mask seed."""

    name = "sparse"
    sparsity: float = 0.5
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.sparsity, (int, float)) or not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity={self.sparsity!r} must be in [0, 1); pass e.g. 0.5")


def random_mask(shape: torch.Size, sparsity: float, generator=None, device=None) -> Tensor:
    """A 0/1 float mask with exactly ``round(sparsity * numel)`` zeros at random positions."""
    numel = int(torch.Size(shape).numel())
    mask = torch.ones(numel, device=device)
    k = round(sparsity * numel)
    if k:
        mask[torch.randperm(numel, generator=generator)[:k].to(mask.device)] = 0.0
    return mask.view(shape)


@register_variant(SparseLoRAConfig)
class SparseLoRA(LoRAVariant):
    """Masked-factor LoRA (any layer kind)."""

    def build(self, adapter, base_weight) -> None:
        super().build(adapter, base_weight)
        a, b = adapter.lora_A.weight, adapter.lora_B.weight
        adapter.register_buffer("mask_A", torch.ones_like(a))
        adapter.register_buffer("mask_B", torch.ones_like(b))
        self.apply_sparsity(adapter, self.config.sparsity)

    @torch.no_grad()
    def apply_sparsity(self, adapter, sparsity: float) -> None:
        """Draw new masks with the given sparsity and zero the masked entries."""
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity={sparsity!r} must be in [0, 1)")
        gen = None
        if self.config.seed is not None:
            gen = torch.Generator().manual_seed(self.config.seed)
        for name in ("A", "B"):
            w = getattr(adapter, f"lora_{name}").weight
            mask = random_mask(w.shape, sparsity, gen, w.device).to(w.dtype)
            getattr(adapter, f"mask_{name}").copy_(mask)
            w.mul_(mask)

    def factors(self, adapter) -> tuple[Tensor, Tensor]:
        return (
            adapter.lora_A.weight * adapter.mask_A,
            adapter.lora_B.weight * adapter.mask_B,
        )
