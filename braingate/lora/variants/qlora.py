"""QLoRA: LoRA over a frozen NF4 4-bit base (Dettmers et al., NeurIPS 2023, arXiv 2305.14314).

The wrapped ``nn.Linear`` is replaced by :class:`~braingate.lora.quant.Linear4bit` (NF4, blocks of
64, double quantisation by default); the adapter is plain LoRA in full precision:

.. math:: y = \\mathrm{deq}(W_{nf4})\\, x + b + s\\, B A\\, x

Merging into a 4-bit base rounds: the merged weight is :math:`Q(\\mathrm{deq}(W_{nf4}) + \\Delta W)`,
so each entry moves to the nearest NF4 level of its block, an error of at most half the largest
code gap (≈0.14) times the block absmax; unmerging rounds again and does not give the original
codes back. Keep QLoRA adapters unmerged (or merge into a dequantised copy) when exactness matters.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from braingate.lora.quant import Linear4bit
from braingate.lora.variants.base import LoRAVariant
from braingate.lora.variants.registry import VariantConfig, register_variant

__all__ = ["QLoRA", "QLoRAConfig"]


@dataclass(frozen=True)
class QLoRAConfig(VariantConfig):
    """NF4 storage of the base: ``blocksize`` weights per absmax, optional double quant."""

    name = "qlora"
    blocksize: int = 64
    double_quant: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.blocksize, int) or self.blocksize < 2 or self.blocksize % 2:
            raise ValueError(f"blocksize={self.blocksize!r} must be an even int >= 2 (e.g. 64)")


@register_variant(QLoRAConfig)
class QLoRA(LoRAVariant):
    """Plain LoRA on an NF4-quantised base (merge rounds, see module docstring)."""

    kinds = frozenset({"linear"})
    exact_merge = False

    def prepare_base(self, base: nn.Module) -> nn.Module:
        if isinstance(base, Linear4bit):
            return base
        if type(base) is not nn.Linear:
            raise ValueError(f"QLoRA quantises nn.Linear layers only, got {type(base).__name__}")
        return Linear4bit(base, self.config.blocksize, self.config.double_quant)

    def check_base(self, base: nn.Module, where: str) -> None:
        if not isinstance(base, Linear4bit):
            raise ValueError(
                f"QLoRA needs a 4-bit base but {where} is already wrapped in full precision; "
                "add the QLoRA adapter first (it quantises the base) or use plain LoRA"
            )
