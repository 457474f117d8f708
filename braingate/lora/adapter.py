"""Adapter: one named LoRA adapter on one weight of a base layer.

It holds the adapter's parameters and buffers (``lora_A``, ``lora_B`` and whatever the variant
adds), its scaling and dropout, and delegates the arithmetic to its variant strategy and layer
kind. It never holds the base weight: the wrapper passes it in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from braingate.lora.kinds import Kind
from braingate.lora.variants.base import LoRAVariant

__all__ = ["Adapter"]


class Adapter(nn.Module):
    """One adapter for one weight slot.

    Args:
        kind: the layer kind (shapes, layout).
        strategy: the variant strategy.
        rank, alpha: r and α; scaling ``α/r`` (``α/√r`` with ``use_rslora``).
        dropout: dropout probability on the adapter input.
        use_rslora: rank-stabilised scaling.
        init_mode: ``True``, ``"gaussian"`` or ``False`` (see LoRAConfig).
        base_weight: returns the current base weight (used once to pick device/dtype and by
            variants that initialise from it, e.g. DoRA's magnitude).
    """

    def __init__(
        self,
        kind: Kind,
        strategy: LoRAVariant,
        rank: int,
        alpha: float,
        dropout: float,
        use_rslora: bool,
        init_mode: bool | str,
        base_weight: Callable[[], Tensor],
    ):
        super().__init__()
        self.kind = kind
        self.strategy = strategy
        self.rank = strategy.adapter_rank(rank)
        self.alpha = float(alpha)
        self.use_rslora = use_rslora
        self.scaling = self.alpha / (self.rank**0.5 if use_rslora else self.rank)
        self.init_mode = init_mode
        use_dropout = dropout > 0 and kind.supports_dropout
        self.dropout: nn.Module = nn.Dropout(dropout) if use_dropout else nn.Identity()
        self.condition: dict[str, Any] = {}
        strategy.build(self, base_weight)

    def forward(self, x: Tensor, base_weight: Callable[[], Tensor]) -> Tensor:
        """The adapter's additive output for input ``x``."""
        return self.strategy.forward(self, x, base_weight)

    def delta_weight(self, base_weight: Tensor) -> Tensor:
        """``ΔW`` in the layout of the base weight (raises if not mergeable)."""
        self.strategy.check_mergeable(self)
        return self.strategy.delta_weight(self, base_weight)

    def extra_repr(self) -> str:
        return (
            f"variant={self.strategy.name}, kind={self.kind.name}, rank={self.rank}, "
            f"alpha={self.alpha:g}, scaling={self.scaling:.4g}"
        )
