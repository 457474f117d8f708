"""PruningAwareLoRA: prune entries (or whole ranks) of A and B during training on a schedule.

Importance is the smoothed first-order sensitivity :math:`\\bar I \\leftarrow \\beta \\bar I +
(1-\\beta)|w\\, \\partial L / \\partial w|` (magnitude :math:`|w|` where no gradient was seen). The
pruned fraction follows the cubic schedule of Zhu & Gupta ("To prune, or not to prune",
arXiv 1710.01878):

.. math:: s_t = s_f \\left(1 - \\left(1 - \\frac{t - t_0}{t_1 - t_0}\\right)^3\\right),
   \\quad t_0 \\le t \\le t_1,

applied every ``every`` steps. Granularity ``"entry"`` keeps the top ``(1 - s_t)`` entries of A and
of B; ``"rank"`` scores rank i by mean importance of row :math:`A_{i,:}` plus column :math:`B_{:,i}`
and removes whole ranks. Pruning is monotone (a pruned entry never returns); pruned raw entries are
zeroed and masked in forward, so merge stays exact. The seed's one-shot ``prune()`` is
:meth:`PruningAwareLoRA.prune_now` with magnitude importance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from braingate.lora.variants.base import LoRAVariant
from braingate.lora.variants.registry import VariantConfig, register_variant

__all__ = ["PruningAwareLoRA", "PruningAwareLoRAConfig", "pruning_schedule"]


@dataclass(frozen=True)
class PruningAwareLoRAConfig(VariantConfig):
    """Target sparsity, granularity and schedule (steps counted by LoRAOptimizer)."""

    name = "pruning"
    target_sparsity: float = 0.5
    granularity: str = "entry"
    start_step: int = 0
    end_step: int = 100
    every: int = 10
    beta: float = 0.85

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_sparsity < 1.0:
            raise ValueError(f"target_sparsity={self.target_sparsity!r} must be in [0, 1)")
        if self.granularity not in ("entry", "rank"):
            raise ValueError(f"granularity={self.granularity!r} must be 'entry' or 'rank'")
        if not 0 <= self.start_step < self.end_step:
            raise ValueError(
                f"start_step={self.start_step}, end_step={self.end_step}: need 0 <= start < end"
            )
        if self.every < 1:
            raise ValueError(f"every={self.every!r} must be >= 1")


def pruning_schedule(step: int, target: float, start: int, end: int) -> float:
    """Sparsity at ``step`` (cubic ramp from 0 at ``start`` to ``target`` at ``end``)."""
    if step <= start:
        return 0.0
    if step >= end:
        return target
    return target * (1.0 - (1.0 - (step - start) / (end - start)) ** 3)


def _keep_top(score: Tensor, old_mask: Tensor, n_keep: int) -> Tensor:
    score = torch.where(old_mask > 0, score, torch.full_like(score, -math.inf))
    keep = torch.zeros(score.numel(), dtype=old_mask.dtype, device=score.device)
    keep[torch.argsort(score.flatten(), descending=True, stable=True)[:n_keep]] = 1
    return keep.view_as(old_mask) * old_mask


@register_variant(PruningAwareLoRAConfig)
class PruningAwareLoRA(LoRAVariant):
    """LoRA whose factors are pruned by importance on a schedule (any layer kind)."""

    def build(self, adapter, base_weight) -> None:
        super().build(adapter, base_weight)
        for n in ("A", "B"):
            w = getattr(adapter, f"lora_{n}").weight
            adapter.register_buffer(f"mask_{n}", torch.ones_like(w))
            adapter.register_buffer(f"imp_{n}", torch.zeros_like(w), persistent=False)
        adapter.register_buffer("seen_grad", torch.zeros((), dtype=torch.bool), persistent=False)

    def factors(self, adapter) -> tuple[Tensor, Tensor]:
        return adapter.lora_A.weight * adapter.mask_A, adapter.lora_B.weight * adapter.mask_B

    @torch.no_grad()
    def _importance(self, adapter, n: str, kind: str) -> Tensor:
        w = getattr(adapter, f"lora_{n}").weight
        if kind == "magnitude" or not bool(adapter.seen_grad):
            return w.abs()
        return getattr(adapter, f"imp_{n}").clone()

    @torch.no_grad()
    def prune_now(self, adapter, sparsity: float, importance: str = "sensitivity") -> None:
        """Prune ``adapter`` to ``sparsity`` now (monotone; never un-prunes)."""
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity={sparsity!r} must be in [0, 1)")
        ia, ib = (
            self._importance(adapter, "A", importance),
            self._importance(adapter, "B", importance),
        )
        if self.config.granularity == "rank":
            score = ia.flatten(1).mean(1) + ib.flatten(1).mean(0)
            alive = adapter.mask_A.flatten(1).amax(1)
            keep = _keep_top(score, alive, math.ceil((1 - sparsity) * adapter.rank))
            adapter.mask_A.mul_(keep.view(-1, *([1] * (adapter.mask_A.dim() - 1))))
            kb = keep.view(1, -1, *([1] * (adapter.mask_B.dim() - 2)))
            adapter.mask_B.mul_(kb)
        else:
            for n, imp in (("A", ia), ("B", ib)):
                mask = getattr(adapter, f"mask_{n}")
                mask.copy_(_keep_top(imp, mask, math.ceil((1 - sparsity) * mask.numel())))
        adapter.lora_A.weight.mul_(adapter.mask_A)
        adapter.lora_B.weight.mul_(adapter.mask_B)

    @torch.no_grad()
    def update(self, adapters, step: int) -> None:
        cfg = self.config
        for a in adapters:
            for n in ("A", "B"):
                w = getattr(a, f"lora_{n}").weight
                if w.grad is not None:
                    imp = getattr(a, f"imp_{n}")
                    imp.mul_(cfg.beta).add_((1 - cfg.beta) * (w * w.grad).abs())
                    a.seen_grad.fill_(True)
        at_end = step == cfg.end_step
        if cfg.start_step < step <= cfg.end_step and (step % cfg.every == 0 or at_end):
            s = pruning_schedule(step, cfg.target_sparsity, cfg.start_step, cfg.end_step)
            for a in adapters:
                self.prune_now(a, s)
        for a in adapters:  # keep pruned raw entries at zero after the optimizer step
            a.lora_A.weight.mul_(a.mask_A)
            a.lora_B.weight.mul_(a.mask_B)
