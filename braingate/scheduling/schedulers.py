"""Registered rank schedulers: ``fixed``, ``complexity``, ``energy_aware``, ``budget``."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor

from braingate.scheduling.base import (
    RankScheduler,
    check_budget,
    check_rank_range,
    register_scheduler,
)
from braingate.scheduling.budget import BudgetManager, describe_range

__all__ = [
    "BudgetRankScheduler",
    "ComplexityRankScheduler",
    "EnergyAwareRankScheduler",
    "FixedRankScheduler",
]


def _scores(c: Any) -> Tensor:
    c = torch.as_tensor(c, dtype=torch.float32).detach().reshape(-1)
    return torch.nan_to_num(c, nan=0.5).clamp(0.0, 1.0)


def _context(sched: RankScheduler, kw: dict[str, Any]) -> tuple[Tensor, Tensor | None, Tensor]:
    """Candidates (K,), absolute energies (K,) or None, captured singular-value mass (K,).

    Without ``singular_values`` the spectrum is assumed linear-decaying,
    :math:`s_j = 1 - j/(R+1)` (an assumption that keeps the mass concave).
    """
    cand = kw.get("candidates")
    if cand is None:
        cand = torch.arange(sched.r_min, sched.r_max + 1)
    cand = torch.as_tensor(cand, dtype=torch.long).reshape(-1)
    energy = kw.get("energy")
    energy = None if energy is None else torch.as_tensor(energy, dtype=torch.float64).reshape(-1)
    sv = kw.get("singular_values")
    top = int(cand.max())
    if sv is None:
        sv = 1.0 - torch.arange(top, dtype=torch.float64) / (top + 1)
    sv = torch.as_tensor(sv, dtype=torch.float64).detach().reshape(-1)
    cum = torch.cumsum(sv.pow(2), 0)
    mass = cum[(cand - 1).clamp(0, sv.numel() - 1)] / cum[-1].clamp(min=1e-30)
    return cand, energy, mass.where(cand > 0, torch.zeros_like(mass))


def _budget_cap(cand: Tensor, energy: Tensor | None, budget: Any, batch: int) -> Tensor:
    """(B, K) bool: candidates whose per-sample energy fits the budget (all True without one)."""
    budget = check_budget(budget)
    if budget is None or energy is None:
        return torch.ones(batch, cand.numel(), dtype=torch.bool)
    b = torch.as_tensor(budget, dtype=torch.float64).reshape(-1, 1).expand(batch, 1)
    return energy[None, :] <= b


@register_scheduler("fixed")
class FixedRankScheduler(RankScheduler):
    """Every sample gets ``rank`` (default ``r_max``): the static low-rank baseline."""

    def __init__(self, r_min: int = 1, r_max: int = 64, rank: int | None = None) -> None:
        self.r_min, self.r_max = check_rank_range(r_min, r_max)
        self.rank = r_max if rank is None else rank
        if not isinstance(self.rank, int) or not r_min <= self.rank <= r_max:
            raise ValueError(f"rank={rank!r} must be an int in [r_min={r_min}, r_max={r_max}]")

    def schedule_rank(self, complexity_scores: Tensor, budget: Any = None, **kw: Any) -> Tensor:
        """:math:`r_i = r` for all samples."""
        c = _scores(complexity_scores)
        return torch.full((c.numel(),), self.rank, dtype=torch.long)


@register_scheduler("complexity")
class ComplexityRankScheduler(RankScheduler):
    """Monotone score → rank map :math:`\\rho_i = r_{min} + c_i^{\\gamma} (r_{max} - r_{min})`,
    then the candidate rank nearest to :math:`\\rho_i` (plain rounding without candidates),
    capped by the budget when energies are given."""

    def __init__(self, r_min: int = 4, r_max: int = 64, gamma: float = 1.0) -> None:
        self.r_min, self.r_max = check_rank_range(r_min, r_max)
        if not gamma > 0:
            raise ValueError(f"gamma={gamma!r} must be > 0")
        self.gamma = float(gamma)

    def schedule_rank(self, complexity_scores: Tensor, budget: Any = None, **kw: Any) -> Tensor:
        c = _scores(complexity_scores)
        rho = self.r_min + c.pow(self.gamma) * (self.r_max - self.r_min)
        cand, energy, _ = _context(self, kw)
        if kw.get("candidates") is None:
            ranks = torch.round(rho).long()
        else:
            ranks = cand[(rho[:, None] - cand[None, :].float()).abs().argmin(dim=1)]
        fits = _budget_cap(cand, energy, budget, c.numel())
        if not fits.all():
            cap = torch.where(fits, cand[None, :], cand.new_zeros(())).max(dim=1).values
            ranks = torch.minimum(ranks, cap.clamp(min=int(cand.min())))
        return ranks


@register_scheduler("energy_aware")
class EnergyAwareRankScheduler(RankScheduler):
    """Per sample, the candidate rank minimising energy minus utility:

    .. math::
        r_i = \\arg\\min_{r} \\; \\alpha\\, \\hat E(r) - (c_i + \\beta)\\, M(r)

    with :math:`\\hat E(r) = E(r)/E(r_{max})` the normalised energy (from the layer's
    estimator; linear in ``r`` without one), :math:`M(r) = \\sum_{j<r} s_j^2 / \\sum_j s_j^2`
    the captured singular-value mass and :math:`c_i` the complexity. ``alpha`` is the energy
    weight, ``beta`` the complexity-independent performance weight. Candidates over the
    per-sample ``budget`` (mJ) are excluded (the cheapest stays if none fits).
    """

    def __init__(
        self, r_min: int = 4, r_max: int = 64, alpha: float = 1.0, beta: float = 0.1
    ) -> None:
        self.r_min, self.r_max = check_rank_range(r_min, r_max)
        if not alpha >= 0 or not beta >= 0:
            raise ValueError(f"alpha={alpha!r}, beta={beta!r} must both be >= 0")
        self.alpha, self.beta = float(alpha), float(beta)

    def objective(
        self, c: Tensor, energy_norm: Tensor, mass: Tensor, lam: float | Tensor = 1.0
    ) -> Tensor:
        """(B, K) cost :math:`\\lambda\\alpha \\hat E - (c + \\beta) M`."""
        return (
            lam * self.alpha * energy_norm[None, :]
            - (c[:, None].double() + self.beta) * mass[None, :]
        )

    def _energy_norm(self, cand: Tensor, energy: Tensor | None) -> Tensor:
        if energy is None:
            return cand.double() / float(cand.max())
        return energy / energy.max().clamp(min=1e-30)

    def schedule_rank(self, complexity_scores: Tensor, budget: Any = None, **kw: Any) -> Tensor:
        c = _scores(complexity_scores)
        cand, energy, mass = _context(self, kw)
        cost = self.objective(c, self._energy_norm(cand, energy), mass)
        fits = _budget_cap(cand, energy, budget, c.numel())
        fits[:, 0] |= ~fits.any(dim=1)
        cost = cost.masked_fill(~fits, float("inf"))
        return cand[cost.argmin(dim=1)]


@register_scheduler("budget")
class BudgetRankScheduler(EnergyAwareRankScheduler):
    """Closed loop: per batch, spend what a :class:`BudgetManager` allocates.

    The manager returns the batch's per-sample target :math:`b` (its share, corrected by the
    credit of past batches). Ranks follow the energy-aware objective with a price
    :math:`\\lambda` found by bisection so that the batch mean energy is at most :math:`b`;
    the samples whose choice changes at the next-lower price are then upgraded, most complex
    first, while the mean stays within :math:`b`. Needs the layer's ``energy`` context.

    Args:
        target_mJ: per-sample target when no ``manager`` is given (a manager with no margin
            is built for it).
        manager: shared :class:`BudgetManager` (several layers may share one).
        layer_id: this layer's key in the manager.
        performance_priority: the layer's priority in the manager's split.
    """

    def __init__(
        self,
        r_min: int = 4,
        r_max: int = 64,
        target_mJ: float | None = None,
        manager: BudgetManager | None = None,
        layer_id: str = "layer",
        performance_priority: float = 1.0,
        alpha: float = 1.0,
        beta: float = 0.1,
    ) -> None:
        super().__init__(r_min, r_max, alpha, beta)
        if manager is None:
            if target_mJ is None:
                raise ValueError(
                    "BudgetRankScheduler needs target_mJ=... (mJ per sample) or manager=BudgetManager(...)"
                )
            manager = BudgetManager(total_budget=target_mJ, safety_margin=0.0)
        self.manager, self.layer_id, self.priority = manager, layer_id, performance_priority

    def reset(self) -> None:
        self.manager.reset()

    def _check_target(self, target: float, cand: Tensor, energy: Tensor, batch: int) -> None:
        """Warn once when this layer's share of the budget can never bind, or always binds."""
        if getattr(self, "_warned", False):
            return
        rng = describe_range(energy, cand.tolist(), None, batch)
        if target >= float(energy[-1]):
            msg = f"never binds (every sample can take r_max): {rng}"
        elif target < float(energy[0]):
            msg = f"always binds (every sample is held at its lowest rank): {rng}"
        else:
            return
        self._warned = True
        warnings.warn(
            f"{type(self).__name__} layer {self.layer_id!r}: its target of {target:.3g} mJ per "
            f"sample {msg}; set the budget in that range (warned once)",
            RuntimeWarning,
            stacklevel=4,
        )

    def schedule_rank(self, complexity_scores: Tensor, budget: Any = None, **kw: Any) -> Tensor:
        c = _scores(complexity_scores)
        cand, energy, mass = _context(self, kw)
        if energy is None:
            raise ValueError(
                "the 'budget' scheduler needs energy=(K,) per-sample mJ per candidate; use it in a layer"
            )
        target = self.manager.allocate_budget(
            self.layer_id, float(c.mean()), kw.get("layer_dims"), self.priority
        )
        self._check_target(self.manager.target_budget(self.layer_id), cand, energy, c.numel())
        fits = _budget_cap(cand, energy, budget, c.numel())
        fits[:, 0] |= ~fits.any(dim=1)
        e_norm = self._energy_norm(cand, energy)

        def pick(log_lam: float) -> Tensor:
            cost = self.objective(c, e_norm, mass, 10.0**log_lam).masked_fill(~fits, float("inf"))
            return cost.argmin(dim=1)

        lo, hi = -4.0, 6.0  # price range: lo buys the most rank, hi the least
        if float(energy[pick(lo)].mean()) <= target:
            hi = lo
        for _ in range(40):
            if hi - lo < 1e-4:
                break
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if float(energy[pick(mid)].mean()) <= target else (mid, hi)
        idx, rich = pick(hi), pick(lo)
        spare = target * c.numel() - float(energy[idx].sum())
        for i in torch.argsort(c, descending=True).tolist():
            extra = float(energy[rich[i]] - energy[idx[i]])
            if 0 < extra <= spare:
                idx[i], spare = rich[i], spare - extra
        self.manager.record_usage(self.layer_id, float(energy[idx].mean()), c.numel())
        return cand[idx]
