"""DoRA: weight-decomposed LoRA (Liu et al., ICML 2024, arXiv 2402.09353; PEFT ``use_dora``).

The adapted weight is split into a learned magnitude per output unit and a direction:

.. math::
    W' = m \\odot \\frac{W_0 + s B A}{\\lVert W_0 + s B A \\rVert_{row}},\\qquad
    m_{init} = \\lVert W_0 \\rVert_{row}

The norm is detached in the backward pass (paper §4.3), as in PEFT. Forward, with
:math:`v = m / \\lVert W_0 + sBA \\rVert` and :math:`\\tilde x = \\mathrm{dropout}(x)`:
:math:`y = W_0 x + b + (v - 1) W_0 \\tilde x + v\\, s B A \\tilde x`. Merging stores the norm so
that unmerging can invert the row scaling exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from braingate.lora.variants.base import LoRAVariant
from braingate.lora.variants.registry import VariantConfig, register_variant

__all__ = ["DoRA", "DoRAConfig"]


@dataclass(frozen=True)
class DoRAConfig(VariantConfig):
    """DoRA has no options beyond LoRAConfig's."""

    name = "dora"


def _rows(v: Tensor, w: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (w.dim() - 1)))


@register_variant(DoRAConfig)
class DoRA(LoRAVariant):
    """Magnitude/direction LoRA; files load in PEFT with ``use_dora=True``."""

    kinds = frozenset({"linear", "conv"})
    peft_compatible = True

    def build(self, adapter, base_weight) -> None:
        super().build(adapter, base_weight)
        w = base_weight()
        norm = adapter.kind.row_norm(w.detach().float()).to(w.dtype)
        shape = (1, -1, 1, 1) if adapter.kind.name == "conv" else (-1,)
        adapter.lora_magnitude_vector = nn.Parameter(norm.reshape(shape).clone())
        adapter.register_buffer("merged_norm", None, persistent=False)

    def _lora_delta(self, adapter, w: Tensor) -> Tensor:
        a, b = self.factors(adapter)
        return adapter.kind.delta_weight(a, b) * adapter.scaling

    def forward(self, adapter, x: Tensor, base_weight) -> Tensor:
        w = base_weight()
        a, b = self.factors(adapter)
        norm = adapter.kind.row_norm(w + self._lora_delta(adapter, w).detach()).detach()
        v = adapter.kind.out_view(adapter.lora_magnitude_vector.reshape(-1) / norm)
        xd = adapter.dropout(x)
        lora = adapter.kind.apply(xd, a, b) * adapter.scaling
        return (v - 1) * adapter.kind.base_apply(xd, w) + v * lora

    def merge(self, adapter, weight: Tensor) -> Tensor:
        full = weight + self._lora_delta(adapter, weight).to(weight.dtype)
        norm = adapter.kind.row_norm(full)
        adapter.merged_norm = norm.detach().clone()
        return _rows(adapter.lora_magnitude_vector.reshape(-1) / norm, full) * full

    def unmerge(self, adapter, weight: Tensor) -> Tensor:
        if adapter.merged_norm is None:
            raise ValueError("DoRA adapter was not merged by this process; cannot unmerge it")
        v = adapter.lora_magnitude_vector.reshape(-1) / adapter.merged_norm
        out = weight / _rows(v, weight) - self._lora_delta(adapter, weight).to(weight.dtype)
        adapter.merged_norm = None
        return out

    def delta_weight(self, adapter, base_weight: Tensor) -> Tensor:
        with torch.no_grad():
            full = base_weight + self._lora_delta(adapter, base_weight)
            v = adapter.lora_magnitude_vector.reshape(-1) / adapter.kind.row_norm(full)
            return _rows(v, full) * full - base_weight
