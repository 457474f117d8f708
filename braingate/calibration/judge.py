r"""How calibrate_thresholds() judges a candidate: the decision the user makes, with a margin
for the sampling noise of the data it is judged on.

Three judges, each built from the exact (θ = 0) outputs on one part of the data:

- :class:`DecisionJudge` — labels (or the exact model's own decisions, ``metric="agreement"``)
  and a readout that turns outputs into decisions: ``"mean"`` / ``"last"`` (one per sample),
  ``"step"`` (one per sample and step), or a callable ``(T, B, C) -> (B, C)``. Let ``m_i`` be the
  exact model's decision margin (top-1 minus runner-up logit) and ``e_i = s·(m_i − m'_i)`` the
  part of it a candidate eats, times ``safety`` ``s``. A unit the exact model got right is
  *lost* when the candidate gets it wrong or ``e_i > m_i`` (a near miss on calibration data is
  a likely miss on unseen data). Unseen data pair margins and erosions afresh, so the estimate
  also pairs every correct margin with every erosion seen:

  .. math::
      \widehat{\mathrm{drop}} = \max\Big(\tfrac1N \textstyle\sum_i (\mathrm{lost}_i -
      \mathrm{gained}_i),\ \tfrac1{N^2} \textstyle\sum_{i\,\mathrm{correct}} \sum_j
      [e_j > m_i]\Big),\qquad
      \mathrm{margin} = z\,\sqrt{k + 1}\,/\,N

  with ``k`` the units lost or gained (or ``N·drop`` if larger): the paired standard error
  with one pseudo-loss, so that "nothing lost yet" on few samples is not taken as certainty.
  For ``k ≤ 50`` the margin is exact instead: the one-sided Clopper–Pearson upper bound on a
  rate after ``⌈k⌉`` events in ``N`` trials at the judge's confidence, less ``k/N`` (after no
  loss in ``N``: ``1 − (1 − confidence)^{1/N} ≈ 2.3/N`` at 0.9, where the normal
  approximation's ``z/N = 1.28/N`` would claim nearly twice the certainty the data give). A
  candidate is accepted when ``drop + margin ≤ tolerance``. When even a loss-free candidate
  fails that (the data cannot resolve the tolerance) the judge is *strict*: nothing may be
  lost, and no erosion may exceed any correct margin.
- :class:`ErrorJudge` — no labels: the relative output error ``‖y − y_exact‖ / ‖y_exact‖`` (of
  the readout, or of every step), with a bootstrap standard error over samples.
- :class:`MetricJudge` — a callable metric ``(outputs, target) -> float`` (higher is better),
  with a paired bootstrap standard error of its drop over samples.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from statistics import NormalDist
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["DecisionJudge", "ErrorJudge", "MetricJudge", "Verdict", "decision_readout",
           "rate_bound"]  # fmt: skip

READOUTS = ("mean", "last", "step")
_BOOTSTRAP = 32  # resamples for bootstrap standard errors (fixed per judge: paired across calls)
_EXACT_UP_TO = 50  # event counts with an exact (Clopper-Pearson) bound; normal beyond


@functools.lru_cache(maxsize=4096)
def rate_bound(k: int, n: int, z: float) -> float:
    """One-sided upper confidence bound on a rate after ``k`` events in ``n`` trials, at the
    confidence ``Φ(z)``: Clopper–Pearson (the ``p`` with ``P(X ≤ k | n, p) = 1 − Φ(z)``) for
    ``k ≤ 50``, ``(k + z·√(k + 1))/n`` beyond; ``k/n`` when ``z ≤ 0`` (no margin)."""
    if z <= 0.0 or k >= n:
        return min(k / n, 1.0)
    if k > _EXACT_UP_TO:
        return min((k + z * math.sqrt(k + 1.0)) / n, 1.0)
    alpha = 1.0 - NormalDist().cdf(z)
    if k == 0:
        return 1.0 - alpha ** (1.0 / n)
    lo, hi = k / n, 1.0
    for _ in range(60):  # P(X <= k) falls as p rises: bisect for P(X <= k) = alpha
        p = 0.5 * (lo + hi)
        if _binom_cdf(k, n, p) > alpha:
            lo = p
        else:
            hi = p
    return hi


def _binom_cdf(k: int, n: int, p: float) -> float:
    lp, lq, c = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return sum(
        math.exp(c - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq)
        for i in range(k + 1)
    )


class Verdict(NamedTuple):
    """One candidate judged on one part of the data.

    ``score``: the metric (higher is better). ``drop``: estimated loss against the exact run
    (near misses counted as losses for decisions). ``margin``: ``z·SE`` of ``drop``.
    ``feasible``: accepted by the search rule. ``within``: ``drop ≤ tolerance`` (the held-out
    check, no margin).
    """

    score: float
    drop: float
    margin: float
    feasible: bool
    within: bool


def decision_readout(readout: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Outputs ``(T, B, C)`` -> decision logits ``(N, C)``: one row per sample (``mean``,
    ``last``, a callable) or per sample and step (``step``: ``N = T·B``, step-major)."""
    if callable(readout):
        return readout
    if readout == "mean":
        return lambda out: out.mean(0)
    if readout == "last":
        return lambda out: out[-1]
    return lambda out: out.reshape(-1, out.shape[-1])


class DecisionJudge:
    """Judges decisions against labels, counting near misses as losses (module docstring)."""

    def __init__(
        self,
        exact: Tensor,
        labels: Tensor | None,
        decide: Callable[[Tensor], Tensor],
        tolerance: float,
        z: float,
        safety: float,
    ) -> None:
        logits = _logits(decide, exact)
        if logits.shape[-1] < 2:
            raise ValueError(
                f"the readout gives {logits.shape[-1]} class score per decision; decisions need "
                "at least 2 (pass ys=None to judge the relative output error instead)"
            )
        self.decide, self.tolerance, self.z = decide, tolerance, z
        self.ref_pred = logits.argmax(-1)
        self.labels = self.ref_pred if labels is None else labels.reshape(-1).to(logits.device)
        if self.labels.shape[0] != logits.shape[0]:
            raise ValueError(
                f"labels give {self.labels.shape[0]} decisions but the readout gives "
                f"{logits.shape[0]}; pass ys of shape (B,) for one decision per sample, (T, B) "
                "with readout='step'"
            )
        self.ref_ok = self.ref_pred == self.labels
        top = logits.topk(2, dim=-1).values
        self.margin = top[:, 0] - top[:, 1]  # the exact model's decision margins
        self.safety = safety
        self.units = int(logits.shape[0])
        self.classes = int(logits.shape[-1])
        self.reference_score = float(self.ref_ok.double().mean())
        self.resolvable = rate_bound(0, self.units, z) <= tolerance + 1e-12

    def __call__(self, out: Tensor) -> Verdict:
        logits = _logits(self.decide, out)
        pred = logits.argmax(-1)
        ok = pred == self.labels
        own = logits.gather(-1, self.ref_pred[:, None]).squeeze(-1)
        rival = logits.scatter(-1, self.ref_pred[:, None], -math.inf).amax(-1)
        erosion = self.safety * (self.margin - (own - rival))  # margin eaten, times safety
        lost = self.ref_ok & (~ok | (erosion > self.margin))
        gained = ~self.ref_ok & ok
        n = self.units
        paired = float(lost.sum() - gained.sum()) / n
        # every correct margin against every erosion seen: unseen samples pair them afresh
        eaten = erosion.sort().values
        reach = n - torch.searchsorted(eaten, self.margin[self.ref_ok].contiguous(), right=True)
        spread = float(reach.sum()) / n**2
        drop = max(paired, spread)
        count = max(float(lost.sum() + gained.sum()), spread * n)
        k = math.ceil(count - 1e-9)
        margin = max(rate_bound(k, n, self.z) - k / n, 0.0)
        if self.resolvable:
            feasible = drop + margin <= self.tolerance + 1e-12
        else:
            feasible = not bool(lost.any()) and spread == 0.0
        within = drop <= self.tolerance + 1e-12
        return Verdict(float(ok.double().mean()), drop, margin, feasible, within)


class ErrorJudge:
    """Relative output error against the exact run, with a bootstrap margin over samples."""

    def __init__(
        self,
        exact: Tensor,
        decide: Callable[[Tensor], Tensor] | None,
        tolerance: float,
        z: float,
        seed: int,
    ) -> None:
        self.decide, self.tolerance, self.z = decide, tolerance, z
        self.ref = self._units(exact)
        self.units = int(self.ref.shape[0])
        self.r = self.ref.pow(2).sum(-1)
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, self.units, (_BOOTSTRAP, self.units), generator=g)
        self.w = torch.zeros(_BOOTSTRAP, self.units, dtype=torch.float64)
        self.w.scatter_add_(1, idx, torch.ones_like(idx, dtype=torch.float64))
        self.reference_score = 0.0
        self.resolvable = self.units >= 2

    def _units(self, out: Tensor) -> Tensor:
        """``(units, features)`` float64: the readout's rows, else samples (steps for a single
        stream)."""
        if self.decide is not None:
            return _logits(self.decide, out)
        y = out.detach().double()
        if y.shape[1] == 1:
            return y.reshape(y.shape[0], -1)
        return y.transpose(0, 1).reshape(y.shape[1], -1)

    def __call__(self, out: Tensor) -> Verdict:
        a = (self._units(out) - self.ref).pow(2).sum(-1)
        err = math.sqrt(float(a.sum()) / max(float(self.r.sum()), 1e-30))
        boot = (self.w @ a / (self.w @ self.r).clamp_min(1e-30)).sqrt()
        margin = self.z * float(boot.std()) if self.resolvable else 0.0
        feasible = err + margin <= self.tolerance + 1e-12
        return Verdict(-err, err, margin, feasible, err <= self.tolerance + 1e-12)


class MetricJudge:
    """A user metric ``(outputs, target) -> float`` with a paired bootstrap margin."""

    def __init__(
        self,
        metric: Callable[[Tensor, Tensor], float],
        exact: Tensor,
        target: Tensor,
        target_dim: int,
        tolerance: float,
        z: float,
        seed: int,
    ) -> None:
        self.metric, self.target, self.dim = metric, target, target_dim
        self.tolerance, self.z = tolerance, z
        self.units = int(exact.shape[1])
        self.reference_score = _call(metric, exact, target)
        self.resolvable = self.units >= 2
        g = torch.Generator().manual_seed(seed)
        self.idx = torch.randint(0, self.units, (_BOOTSTRAP if self.resolvable else 0, self.units),
                                 generator=g)  # fmt: skip
        self.ref_boot = [self._on(exact, i) for i in self.idx]

    def _on(self, out: Tensor, i: Tensor) -> float:
        return _call(self.metric, out[:, i], self.target.index_select(self.dim, i))

    def __call__(self, out: Tensor) -> Verdict:
        score = _call(self.metric, out, self.target)
        drop = self.reference_score - score
        margin = 0.0
        if self.resolvable:
            diffs = torch.tensor([r - self._on(out, i) for r, i in zip(self.ref_boot, self.idx)])
            margin = self.z * float(diffs.std())
        feasible = drop + margin <= self.tolerance + 1e-12
        return Verdict(score, drop, margin, feasible, drop <= self.tolerance + 1e-12)


def _logits(decide: Callable[[Tensor], Tensor], out: Tensor) -> Tensor:
    y = decide(out)
    if not isinstance(y, Tensor) or y.dim() != 2:
        got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(
            f"readout returned {got}; a readout must map outputs (T, B, C) to decision logits "
            "(B, C)"
        )
    return y.detach().double()


def _call(metric: Callable[[Tensor, Tensor], float], out: Tensor, target: Tensor) -> float:
    value = float(metric(out, target))
    if not math.isfinite(value):
        raise ValueError(f"metric returned {value}; a metric must return a finite float")
    return value
