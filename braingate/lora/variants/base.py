"""The strategy interface every LoRA variant implements, and plain LoRA itself.

A strategy is a stateless object holding its (frozen) config; per-layer state lives in the
:class:`~braingate.lora.adapter.Adapter` module it is given (parameters and buffers, so it moves
with ``.to()`` and is saved with the adapter). Hooks:

- ``build(adapter)``: create the adapter's parameters (default: PEFT's A and B).
- ``factors(adapter) -> (A, B)``: effective factor weights (masks, singular values applied).
- ``forward(adapter, x, base_weight) -> Δy``: the adapter's additive output.
- ``delta_weight / merge / unmerge``: fold into / out of the base weight.
- ``check_mergeable(adapter)``: raise when the delta is input-dependent.
- ``regularization(adapters)``: an extra loss term over all layers of one adapter, or None.
- ``update(adapters, step)``: a periodic step over all layers of one adapter (AdaLoRA budget,
  pruning schedule); :class:`~braingate.lora.optim.LoRAOptimizer` calls it after each step.
- ``prepare_base(base)``: replace the frozen base layer (QLoRA quantises it).

Plain LoRA (Hu et al., ICLR 2022, arXiv 2106.09685):

.. math::
    y = W_0 x + b + s\\, B A\\, \\mathrm{dropout}(x),\\qquad s = \\alpha / r
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from torch import Tensor, nn

from braingate.lora.variants.registry import VariantConfig, register_variant

if TYPE_CHECKING:
    from braingate.lora.adapter import Adapter

__all__ = ["LoRAVariant", "PlainLoRA"]

BaseWeight = Callable[[], Tensor]


class LoRAVariant:
    """Base strategy: plain LoRA behaviour; variants override what differs."""

    name: ClassVar[str] = "lora"
    kinds: ClassVar[frozenset[str]] = frozenset({"linear", "conv", "embedding"})
    exact_merge: ClassVar[bool] = True
    has_factors: ClassVar[bool] = True
    peft_compatible: ClassVar[bool] = False

    def __init__(self, config: VariantConfig):
        self.config = config

    def check_kind(self, kind_name: str, where: str) -> None:
        """Raise when this variant cannot adapt a layer of ``kind_name``."""
        if kind_name not in self.kinds:
            raise ValueError(
                f"variant {self.name!r} does not support {kind_name} layers ({where}); it "
                f"supports {sorted(self.kinds)}: narrow target_modules"
            )

    def adapter_rank(self, rank: int) -> int:
        """The rank the adapter is built with (AdaLoRA uses its init_r)."""
        return rank

    def prepare_base(self, base: nn.Module) -> nn.Module:
        """Return the base layer to wrap (default: unchanged)."""
        return base

    def check_base(self, base: nn.Module, where: str) -> None:
        """Raise when the (already wrapped) base layer cannot take this variant."""

    def build(self, adapter: Adapter, base_weight: BaseWeight) -> None:
        """Create the adapter's parameters."""
        kind = adapter.kind
        w = base_weight()
        adapter.lora_A, adapter.lora_B = kind.make_factors(adapter.rank, w.device, w.dtype)
        kind.init_factors(adapter.lora_A, adapter.lora_B, adapter.init_mode)

    def factors(self, adapter: Adapter) -> tuple[Tensor, Tensor]:
        """Effective ``(A, B)`` weights."""
        return adapter.lora_A.weight, adapter.lora_B.weight

    def forward(self, adapter: Adapter, x: Tensor, base_weight: BaseWeight) -> Tensor:
        """``s · B A dropout(x)``."""
        a, b = self.factors(adapter)
        return adapter.kind.apply(adapter.dropout(x), a, b) * adapter.scaling

    def check_mergeable(self, adapter: Adapter) -> None:
        """Raise ValueError when the adapter cannot be folded into one weight."""

    def delta_weight(self, adapter: Adapter, base_weight: Tensor) -> Tensor:
        """``ΔW = s · B A`` in the base weight's layout."""
        a, b = self.factors(adapter)
        return adapter.kind.delta_weight(a, b) * adapter.scaling

    def merge(self, adapter: Adapter, weight: Tensor) -> Tensor:
        """The merged weight ``W + ΔW`` (a new tensor)."""
        return weight + self.delta_weight(adapter, weight).to(weight.dtype)

    def unmerge(self, adapter: Adapter, weight: Tensor) -> Tensor:
        """Invert :meth:`merge`."""
        return weight - self.delta_weight(adapter, weight).to(weight.dtype)

    def regularization(self, adapters: Sequence[Adapter]) -> Tensor | None:
        """An extra loss over every layer of one adapter (None: nothing)."""
        return None

    def update(self, adapters: Sequence[Adapter], step: int) -> None:
        """Periodic update over every layer of one adapter (called by LoRAOptimizer.step)."""


@register_variant(VariantConfig)
class PlainLoRA(LoRAVariant):
    """Plain LoRA; files it saves load in PEFT."""

    peft_compatible = True
