"""AttentionGuidedLoRA: input-dependent weights over the rank components (the seed's variant).

.. math::
    w(x) = r\\, \\mathrm{softmax}(G x / \\tau),\\qquad
    \\Delta y = s\\, B\\, \\big( w(x) \\odot A x \\big)

``G: Linear(n, r)`` starts at zero, so :math:`w = 1` and the adapter starts as plain LoRA (the
factor r keeps the mean weight at 1; the seed's plain softmax shrank the update by 1/r). The delta
depends on the input, so the adapter cannot be merged into a static weight: ``merge`` raises.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from braingate.lora.variants.base import LoRAVariant
from braingate.lora.variants.registry import VariantConfig, register_variant

__all__ = ["AttentionGuidedLoRA", "AttentionGuidedLoRAConfig"]


@dataclass(frozen=True)
class AttentionGuidedLoRAConfig(VariantConfig):
    """Softmax temperature τ of the rank attention."""

    name = "attention"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature!r} must be > 0")


@register_variant(AttentionGuidedLoRAConfig)
class AttentionGuidedLoRA(LoRAVariant):
    """Rank components weighted by an attention over the input (linear layers)."""

    kinds = frozenset({"linear"})
    exact_merge = False

    def build(self, adapter, base_weight) -> None:
        super().build(adapter, base_weight)
        w = adapter.lora_A.weight
        adapter.lora_attention = nn.Linear(
            adapter.kind.in_features, adapter.rank, device=w.device, dtype=w.dtype
        )
        with torch.no_grad():
            adapter.lora_attention.weight.zero_()
            adapter.lora_attention.bias.zero_()

    def forward(self, adapter, x: Tensor, base_weight) -> Tensor:
        a, b = self.factors(adapter)
        xd = adapter.dropout(x)
        att = adapter.lora_attention(xd) / self.config.temperature
        weights = adapter.rank * F.softmax(att, dim=-1)
        return F.linear(F.linear(xd, a) * weights, b) * adapter.scaling

    def check_mergeable(self, adapter) -> None:
        raise ValueError(
            "AttentionGuidedLoRA weights its rank components by the input: it cannot be merged "
            "into a static weight; keep it unmerged"
        )
