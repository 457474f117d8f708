"""HyperLoRA: a hypernetwork generates A and B from a task embedding (the seed's variant;
cf. HyperNetworks, Ha et al. 2017, and HyperLoRA-style adapters).

.. math::
    [\\mathrm{vec}(A_e);\\ \\mathrm{vec}(B_e)] = H(e),\\qquad \\Delta y = s\\, B_e A_e\\, x

``H`` is ``Linear(d, hidden) → ReLU → Linear(hidden, r·n + m·r)``. Its last layer starts with zero
weights, a zero bias on the B part and a Kaiming-uniform A in its bias, so every embedding starts
from plain LoRA's init (B = 0). The embedding is ``(d,)`` (or ``(1, d)``) for the whole batch, or
``(B, d)`` per sample. Merging needs one shared embedding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from braingate.lora.functional import lowrank_apply
from braingate.lora.variants.base import LoRAVariant
from braingate.lora.variants.registry import VariantConfig, register_variant

__all__ = ["HyperLoRA", "HyperLoRAConfig"]


@dataclass(frozen=True)
class HyperLoRAConfig(VariantConfig):
    """Task-embedding size and the hypernetwork's hidden width."""

    name = "hyper"
    task_embedding_dim: int = 16
    hidden: int = 64

    def __post_init__(self) -> None:
        for f in ("task_embedding_dim", "hidden"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{f}={v!r} must be a positive int")


@register_variant(HyperLoRAConfig)
class HyperLoRA(LoRAVariant):
    """Adapter factors generated from a task embedding (linear layers)."""

    kinds = frozenset({"linear"})
    has_factors = False

    def build(self, adapter, base_weight) -> None:
        w = base_weight()
        r, n, m = adapter.rank, adapter.kind.in_features, adapter.kind.out_features
        cfg = self.config
        kw = {"device": w.device, "dtype": w.dtype}
        last = nn.Linear(cfg.hidden, r * n + m * r, **kw)
        a0 = torch.empty(r, n, **kw)
        nn.init.kaiming_uniform_(a0, a=math.sqrt(5))
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
            last.bias[: r * n] = a0.flatten()
            if adapter.init_mode is False:
                nn.init.normal_(last.weight, std=0.1)
        adapter.hyper_net = nn.Sequential(
            nn.Linear(cfg.task_embedding_dim, cfg.hidden, **kw), nn.ReLU(), last
        )

    def _embedding(self, adapter) -> Tensor:
        if "task_embedding" not in adapter.condition:
            raise ValueError(
                "HyperLoRA needs a task embedding: call model(x, task_embedding=e) or use "
                "model.condition(task_embedding=e)"
            )
        e = torch.as_tensor(adapter.condition["task_embedding"])
        d = self.config.task_embedding_dim
        if e.shape[-1] != d or e.dim() not in (1, 2):
            raise ValueError(f"task_embedding shape {tuple(e.shape)}; expected ({d},) or (B, {d})")
        return e[0] if e.dim() == 2 and e.shape[0] == 1 else e

    def generate(self, adapter) -> tuple[Tensor, Tensor]:
        """``(A, B)`` for the current embedding: ``(r, n), (m, r)`` or per sample."""
        e = self._embedding(adapter)
        out = adapter.hyper_net(e.to(adapter.hyper_net[0].weight))
        r, n, m = adapter.rank, adapter.kind.in_features, adapter.kind.out_features
        lead = out.shape[:-1]
        return out[..., : r * n].reshape(*lead, r, n), out[..., r * n :].reshape(*lead, m, r)

    def forward(self, adapter, x: Tensor, base_weight) -> Tensor:
        a, b = self.generate(adapter)
        return lowrank_apply(adapter.dropout(x), a, b) * adapter.scaling

    def check_mergeable(self, adapter) -> None:
        if self._embedding(adapter).dim() != 1:
            raise ValueError("merging HyperLoRA needs one shared task embedding in the condition")

    def delta_weight(self, adapter, base_weight: Tensor) -> Tensor:
        a, b = self.generate(adapter)
        return b @ a * adapter.scaling
