"""AdaLoRA: adaptive budget allocation over SVD-form triplets (Zhang et al., ICLR 2023,
arXiv 2303.10512; PEFT ``AdaLoraConfig``; REFERENCES.md §F).

.. math::
    \\Delta W = \\frac{\\alpha}{r_{init}}\\, P\\, \\Lambda\\, Q = \\frac{\\alpha}{r_{init}}\\,
    B\\, \\mathrm{diag}(E \\odot \\mathrm{mask})\\, A

Importance of each parameter: sensitivity :math:`I = |w\\,\\partial L/\\partial w|`, smoothed
:math:`\\bar I \\leftarrow \\beta_1 \\bar I + (1-\\beta_1) I`, uncertainty
:math:`\\bar U \\leftarrow \\beta_2 \\bar U + (1-\\beta_2)|I - \\bar I|`, score :math:`\\bar I \\bar U`.
Triplet score :math:`S_i = s(E_i) + \\mathrm{mean}_j s(A_{ij}) + \\mathrm{mean}_o s(B_{oi})`.
Budget (total kept triplets over all layers): :math:`b(0)` until :math:`t_{init}`, then
:math:`b(T) + (b(0) - b(T))(1 - \\frac{t - t_{init}}{T - t_{final} - t_{init}})^3`, then
:math:`b(T)` (mask frozen). Every ``deltaT`` steps the top-``b(t)`` triplets are kept (ties broken
by position) and the others masked; a masked triplet contributes nothing (its E is zeroed and
masked in forward). Orthogonality penalty :math:`\\lVert AA^T - I\\rVert_F + \\lVert B^TB -
I\\rVert_F`, averaged over layers, times ``orth_reg_weight``. The allocation runs inside
:class:`~braingate.lora.optim.LoRAOptimizer.step` (PEFT leaves ``update_and_allocate`` to the
user's loop).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from braingate.lora.variants.base import LoRAVariant
from braingate.lora.variants.registry import VariantConfig, register_variant

__all__ = ["AdaLoRA", "AdaLoRAConfig", "adalora_budget"]


@dataclass(frozen=True)
class AdaLoRAConfig(VariantConfig):
    """AdaLoRA options (PEFT defaults; ``total_step`` is required before training)."""

    name = "adalora"
    target_r: int = 8
    init_r: int = 12
    tinit: int = 0
    tfinal: int = 0
    deltaT: int = 1
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg_weight: float = 0.5
    total_step: int | None = None

    def __post_init__(self) -> None:
        for f in ("target_r", "init_r", "deltaT"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{f}={v!r} must be a positive int")
        if self.target_r > self.init_r:
            raise ValueError(
                f"target_r={self.target_r} > init_r={self.init_r}; need target_r <= init_r"
            )
        for f in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, f) < 1.0:
                raise ValueError(f"{f}={getattr(self, f)!r} must be in [0, 1)")
        if self.tinit < 0 or self.tfinal < 0:
            raise ValueError(f"tinit={self.tinit}, tfinal={self.tfinal} must be >= 0")
        if self.total_step is not None and self.tinit >= self.total_step - self.tfinal:
            raise ValueError(
                f"tinit={self.tinit} must be < total_step - tfinal = "
                f"{self.total_step - self.tfinal}; lower tinit/tfinal or raise total_step"
            )


def adalora_budget(
    step: int, init_budget: int, target_budget: int, tinit: int, tfinal: int, total_step: int
) -> int:
    """The cubic budget schedule b(t) (see module docstring)."""
    if step <= tinit:
        return init_budget
    if step >= total_step - tfinal:
        return target_budget
    progress = (step - tinit) / (total_step - tfinal - tinit)
    return int(target_budget + (init_budget - target_budget) * (1 - progress) ** 3)


def _score(adapter, name: str) -> Tensor:
    return getattr(adapter, f"ipt_{name}") * getattr(adapter, f"unc_{name}")


@register_variant(AdaLoRAConfig)
class AdaLoRA(LoRAVariant):
    """SVD-form LoRA whose rank budget is reallocated during training."""

    def adapter_rank(self, rank: int) -> int:
        return self.config.init_r

    def build(self, adapter, base_weight) -> None:
        super().build(adapter, base_weight)
        with torch.no_grad():
            nn.init.normal_(adapter.lora_A.weight, std=0.02)
            nn.init.normal_(adapter.lora_B.weight, std=0.02)
        w = adapter.lora_A.weight
        adapter.lora_E = nn.Parameter(torch.zeros(adapter.rank, device=w.device, dtype=w.dtype))
        if adapter.init_mode is False:
            nn.init.normal_(adapter.lora_E.data)
        adapter.register_buffer("rank_mask", torch.ones(adapter.rank, device=w.device))
        for n, p in (
            ("A", adapter.lora_A.weight),
            ("B", adapter.lora_B.weight),
            ("E", adapter.lora_E),
        ):
            adapter.register_buffer(f"ipt_{n}", torch.zeros_like(p), persistent=False)
            adapter.register_buffer(f"unc_{n}", torch.zeros_like(p), persistent=False)

    def factors(self, adapter) -> tuple[Tensor, Tensor]:
        a = adapter.lora_A.weight
        e = adapter.lora_E * adapter.rank_mask.to(a.dtype)
        return a * e.reshape(-1, *([1] * (a.dim() - 1))), adapter.lora_B.weight

    def regularization(self, adapters) -> Tensor | None:
        if self.config.orth_reg_weight == 0 or not adapters:
            return None
        total = 0.0
        for ad in adapters:
            a = ad.lora_A.weight.flatten(1)
            b = (
                ad.lora_B.weight.flatten(1)
                if ad.lora_B.weight.dim() == 2
                else ad.lora_B.weight[:, :, 0, 0]
            )
            eye = torch.eye(ad.rank, device=a.device, dtype=a.dtype)
            total = (
                total
                + torch.linalg.matrix_norm(a @ a.T - eye)
                + torch.linalg.matrix_norm(b.T @ b - eye)
            )
        return self.config.orth_reg_weight * total / len(adapters)

    def triplet_scores(self, adapter) -> Tensor:
        """Importance of each triplet :math:`S_i` (zeros before any gradient)."""
        sa = _score(adapter, "A").flatten(1).mean(dim=1)
        sb = _score(adapter, "B")
        sb = (sb if sb.dim() == 2 else sb[:, :, 0, 0]).mean(dim=0)
        return _score(adapter, "E") + sa + sb

    @torch.no_grad()
    def update_importance(self, adapter) -> None:
        """One EMA update of sensitivity and uncertainty from the current gradients."""
        b1, b2 = self.config.beta1, self.config.beta2
        for n, p in (
            ("A", adapter.lora_A.weight),
            ("B", adapter.lora_B.weight),
            ("E", adapter.lora_E),
        ):
            if p.grad is None:
                continue
            ipt = (p * p.grad).abs()
            exp, unc = getattr(adapter, f"ipt_{n}"), getattr(adapter, f"unc_{n}")
            exp.mul_(b1).add_((1 - b1) * ipt)
            unc.mul_(b2).add_((1 - b2) * (ipt - exp).abs())

    @torch.no_grad()
    def mask_to_budget(self, adapters, budget: int) -> None:
        """Keep the ``budget`` highest-scoring triplets over all ``adapters``; mask the rest."""
        scores = torch.cat([self.triplet_scores(a) for a in adapters])
        keep = torch.zeros(scores.numel(), dtype=torch.bool, device=scores.device)
        order = torch.argsort(scores, descending=True, stable=True)
        keep[order[: max(0, budget)]] = True
        start = 0
        for a in adapters:
            k = keep[start : start + a.rank]
            start += a.rank
            a.rank_mask.copy_(k.to(a.rank_mask.dtype))
            a.lora_E.masked_fill_(~k, 0.0)

    def update(self, adapters, step: int) -> None:
        cfg = self.config
        if cfg.total_step is None:
            raise ValueError(
                "AdaLoRA needs total_step (the number of training steps): pass "
                "variant=AdaLoRAConfig(total_step=...)"
            )
        if step > cfg.total_step - cfg.tfinal:  # final phase: the mask stays fixed
            with torch.no_grad():
                for a in adapters:
                    a.lora_E.masked_fill_(a.rank_mask == 0, 0.0)
            return
        for a in adapters:
            self.update_importance(a)
        init_b = sum(a.rank for a in adapters)
        target_b = cfg.target_r * len(adapters)
        budget = adalora_budget(step, init_b, target_b, cfg.tinit, cfg.tfinal, cfg.total_step)
        final = step == cfg.total_step - cfg.tfinal
        if step > cfg.tinit and (step % cfg.deltaT == 0 or final):
            self.mask_to_budget(adapters, budget)
