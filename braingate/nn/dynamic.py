"""``DynamicLowRankLayer``: per-sample rank chosen by a complexity scorer and a rank scheduler."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from braingate.energy.estimator import PerfEstimator, energy_of
from braingate.functional.lowrank import lowrank_linear, svd_factorize
from braingate.nn.event_linear import EventLinear
from braingate.scheduling.base import RankScheduler, check_budget, check_rank_range
from braingate.scheduling.masks import (
    block_ends,
    blocks_to_unit_mask,
    ranks_to_blocks,
    soft_unit_mask,
    straight_through,
)
from braingate.scheduling.schedulers import ComplexityRankScheduler
from braingate.scheduling.scorers import MLPComplexityScorer

__all__ = ["DynamicLowRankLayer", "sanitize_input"]


def sanitize_input(x: Tensor, owner: nn.Module) -> Tensor:
    """Replace NaN/±Inf by 0, warning once per ``owner`` (the seed guide's documented behaviour)."""
    if torch.isfinite(x).all():
        return x
    if not getattr(owner, "_warned_nonfinite", False):
        warnings.warn(
            f"{type(owner).__name__} got NaN/Inf inputs; they are treated as 0 (warned once)",
            RuntimeWarning,
            stacklevel=3,
        )
        owner._warned_nonfinite = True
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


class DynamicLowRankLayer(nn.Module):
    """Low-rank linear layer whose active rank is chosen per sample.

    .. math::
        c_i = \\mathrm{scorer}(x_i), \\quad r_i = \\mathrm{scheduler}(c_i, \\text{budget}), \\quad
        y_i = U\\,\\mathrm{diag}(s \\odot g_i)\\,V^T x_i + b

    The rank ``r_max`` is split into ``num_gate_blocks`` contiguous blocks; ``g_i`` switches on
    the fewest leading blocks covering ``r_i``. In training the mask is straight-through,
    :math:`g = h + \\tilde g - \\mathrm{sg}(\\tilde g)` with the soft prefix mask
    :math:`\\tilde g_{ij} = \\sigma((\\rho_i - j - 1/2)/\\tau)` at
    :math:`\\rho_i = r_{min} + c_i (r_{max} - r_{min})`, so the scorer receives gradient.
    ``budget`` (mJ per sample, as priced by ``estimator``) is a hard cap: no sample's rank
    costs more, even if that means fewer than ``r_min`` units (a warning says so).

    The factors live in an :class:`EventLinear` (``self.base``), so ``execution="event"``
    runs the same per-sample gates through its event path (one step ``(B, n)`` per call).

    Args:
        in_features, out_features: ``n``, ``m``.
        r_max, r_min: rank range, ``1 <= r_min <= r_max <= min(n, m)``.
        scorer_hidden: hidden width of the default learned scorer.
        num_gate_blocks: gate blocks, ``1 <= num_gate_blocks <= r_max``.
        scheduler: a ``RankScheduler`` (or name, or anything with ``schedule_rank``);
            default ``ComplexityRankScheduler(r_min, r_max)``.
        estimator: prices a rank (default ``PerfEstimator()``); ``estimate`` may return a dict
            with ``energy_mJ`` or a number (batch energy, mJ).
        bias: learn a bias. scorer: replaces the learned scorer (e.g. ``InputChangeScorer()``).
        rank_bias: also learn a "switchable" bias per realised rank, ``y_i += c_{r_i}`` (a
            table ``(r_max + 1, m)``, zero-initialised: one row read per sample, no FLOPs),
            which lets each nested prefix recentre its output (cf. switchable BatchNorm).
        temperature: soft-mask temperature, in units of one block.

    Shape: ``x (..., n) -> (y (..., m), ranks (N,))`` with ``N`` the product of the leading dims.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        r_max: int | None = None,
        r_min: int | None = None,
        scorer_hidden: int = 32,
        num_gate_blocks: int = 8,
        scheduler: Any = None,
        estimator: Any = None,
        *,
        bias: bool = True,
        scorer: nn.Module | None = None,
        temperature: float = 0.5,
        rank_bias: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for key, val in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{key}={val!r} must be a positive int")
        full = min(in_features, out_features)
        r_max = max(1, full // 2) if r_max is None else r_max
        r_min = max(1, r_max // 8) if r_min is None else r_min
        r_min, r_max = check_rank_range(r_min, r_max)
        if r_max > full:
            raise ValueError(
                f"r_max={r_max} exceeds min(in_features, out_features)={full}; pass r_max<={full}"
            )
        if not isinstance(num_gate_blocks, int) or not 1 <= num_gate_blocks <= r_max:
            raise ValueError(
                f"num_gate_blocks={num_gate_blocks!r} must be an int in [1, r_max={r_max}]"
            )
        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r} must be > 0")
        self.in_features, self.out_features = in_features, out_features
        self.r_min, self.r_max, self.num_gate_blocks = r_min, r_max, num_gate_blocks
        self.temperature = float(temperature)
        self.register_buffer("ends", block_ends(r_max, num_gate_blocks), persistent=False)
        # EventLinear needs equal blocks; when r_max is not a multiple, it gates single units.
        self._ev_blocks = num_gate_blocks if r_max % num_gate_blocks == 0 else r_max
        self.base = EventLinear(in_features, out_features, r_max, blocks=self._ev_blocks, bias=bias,
                                device=device, dtype=dtype)  # fmt: skip
        self._init_spectrum()
        self.rank_bias = (
            nn.Parameter(torch.zeros(r_max + 1, out_features, device=device, dtype=dtype))
            if rank_bias
            else None
        )
        self.scorer = (
            scorer
            if scorer is not None
            else MLPComplexityScorer(in_features, scorer_hidden, device, dtype)
        )
        self.scheduler = scheduler
        self.estimator = estimator if estimator is not None else PerfEstimator()
        self._energy_cache: dict[tuple[int, int], Tensor] = {}
        self.budget: float | None = (
            None  # used when forward() gets budget=None (e.g. set by Trainer)
        )
        self.last_ranks: Tensor | None = None
        self.last_scores: Tensor | None = None
        self.last_soft_rank: Tensor | None = None
        self.last_energy_mJ: Tensor | None = None

    def _init_spectrum(self) -> None:
        """Factor an ``nn.Linear``-style random weight, so ``s`` decays like a real spectrum."""
        n, m, r = self.in_features, self.out_features, self.r_max
        with torch.no_grad():
            w = torch.empty(m, n, device=self.base.U.device).uniform_(-1.0, 1.0) / math.sqrt(n)
            if n * m <= 1 << 19:
                U, s, V, _ = svd_factorize(w, r)
            else:
                U, s, V = torch.svd_lowrank(w, q=min(r + 8, min(n, m)), niter=2)
                U, s, V = U[:, :r], s[:r], V[:, :r]
            self.base.U.copy_(U)
            self.base.s.copy_(s)
            self.base.V.copy_(V)

    # -- configuration ------------------------------------------------------------------------
    @property
    def scheduler(self) -> Any:
        """The rank scheduler (assignable: any object with ``schedule_rank``)."""
        return self._scheduler

    @scheduler.setter
    def scheduler(self, value: Any) -> None:
        if value is None:
            value = ComplexityRankScheduler(self.r_min, self.r_max)
        elif isinstance(value, str):
            value = RankScheduler(value, r_min=self.r_min, r_max=self.r_max)
        if not callable(getattr(value, "schedule_rank", None)):
            raise TypeError(
                f"scheduler={value!r} has no schedule_rank(); pass a RankScheduler or a name"
            )
        self._scheduler = value

    @property
    def execution(self) -> str:
        """``"dense"`` (default, differentiable) or ``"event"``/``"auto"`` (via ``self.base``)."""
        return self.base.execution

    @execution.setter
    def execution(self, mode: str) -> None:
        self.base.execution = mode

    def reset(self) -> None:
        """Clear event state, stateful scorers and closed-loop schedulers."""
        self.base.reset()
        for obj in (self.scorer, self._scheduler):
            if callable(getattr(obj, "reset", None)):
                obj.reset()

    def energy_table(self, batch_size: int) -> Tensor:
        """Per-sample energy (mJ) at each block end, ``(K,)`` float64, as priced by the estimator."""
        key = (batch_size, id(self.estimator))
        if key not in self._energy_cache:
            dims = (self.in_features, self.out_features)
            vals = [energy_of(self.estimator.estimate(dims, int(r), batch_size=batch_size)) / batch_size
                    for r in self.ends.tolist()]  # fmt: skip
            self._energy_cache[key] = torch.tensor(vals, dtype=torch.float64)
        return self._energy_cache[key]

    # -- forward -------------------------------------------------------------------------------
    def plan(self, scores: Tensor, budget: Any = None) -> tuple[Tensor, Tensor]:
        """Ranks ``(B,)`` and active-block counts ``(B,)`` for detached ``scores``."""
        budget = check_budget(budget)
        B = scores.shape[0]
        energy = self.energy_table(B)
        k_min = int(torch.searchsorted(self.ends.cpu(), torch.tensor(self.r_min)))
        cand = self.ends.cpu()[k_min:]
        out = self._scheduler.schedule_rank(
            scores.detach().cpu(), budget=budget, candidates=cand, energy=energy[k_min:],
            singular_values=self.base.s.detach().abs().cpu(), layer_dims=(self.in_features, self.out_features),
        )  # fmt: skip
        ranks = (
            torch.as_tensor(out, dtype=torch.long).cpu().reshape(-1).expand(B)
            if not isinstance(out, Tensor) or out.numel() == 1
            else out.long().cpu().reshape(-1)
        )
        if ranks.numel() != B:
            raise ValueError(f"scheduler returned {ranks.numel()} ranks for a batch of {B}")
        nb = ranks_to_blocks(ranks.clamp(self.r_min, self.r_max), self.ends.cpu())
        if budget is not None:
            b = torch.as_tensor(budget, dtype=torch.float64).reshape(-1).expand(B)
            fits = energy[None, :] <= b[:, None]
            cap = torch.where(fits, torch.arange(1, len(energy) + 1), 0).max(dim=1).values
            if (cap < k_min + 1).any() and not getattr(self, "_warned_budget", False):
                warnings.warn(f"budget is below the energy of r_min={self.r_min} for some samples; "
                              "their rank goes below r_min (warned once)", RuntimeWarning, stacklevel=3)  # fmt: skip
                self._warned_budget = True
            nb = torch.minimum(nb, cap)
        pad = torch.cat([self.ends.new_zeros(1).cpu(), self.ends.cpu()])
        return pad[nb], nb

    def forward(self, x: Tensor, budget: Any = None) -> tuple[Tensor, Tensor]:
        """Returns ``(y, ranks)``; ``ranks`` is a LongTensor with one rank per sample."""
        if not isinstance(x, Tensor) or x.shape[-1:] != (self.in_features,):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x has shape {shape}; expected (..., {self.in_features})")
        x = sanitize_input(x, self)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        scores = self.scorer(x2)
        ranks, nb = self.plan(scores, self.budget if budget is None else budget)
        dev = x.device
        hard = blocks_to_unit_mask(nb.to(dev), self.ends, x.dtype)
        rho = self.r_min + scores * (self.r_max - self.r_min)
        self.last_scores, self.last_ranks = scores.detach(), ranks
        self.last_energy_mJ = torch.cat(
            [torch.zeros(1, dtype=torch.float64), self.energy_table(len(ranks))]
        )[nb]
        # straight-through rank: value = realised rank, gradient through the scorer
        self.last_soft_rank = ranks.to(dev, x.dtype) + rho - rho.detach()
        if self.base.execution != "dense":
            if x.dim() != 2:
                raise ValueError(
                    f"execution={self.execution!r} takes one step (B, {self.in_features})"
                )
            gate = (
                hard.bool()
                if self._ev_blocks == self.r_max
                else (nb.to(dev)[:, None] > torch.arange(self.num_gate_blocks, device=dev))
            )
            self.base.set_active_blocks(gate)
            return self._add_rank_bias(self.base(x2), ranks), ranks
        gate = hard
        if scores.requires_grad and torch.is_grad_enabled():
            tau = self.temperature * self.r_max / self.num_gate_blocks
            gate = straight_through(hard, soft_unit_mask(rho, self.r_max, tau))
        b = self.base
        y = self._add_rank_bias(lowrank_linear(x2, b.U, b.s, b.V, b.bias, gate), ranks)
        return y.reshape(*lead, self.out_features), ranks

    def _add_rank_bias(self, y: Tensor, ranks: Tensor) -> Tensor:
        return y if self.rank_bias is None else y + self.rank_bias[ranks.to(y.device)]

    def forward_ranks(self, x: Tensor, ranks: Any) -> Tensor:
        """Outputs of every sample at each rank of ``ranks`` (nested prefixes, one pass).

        .. math:: y^{(r)} = \\sum_{j<r} u_j s_j (v_j^T x) + b + c_r

        (``c_r`` the rank bias when enabled). For nested ("matryoshka") training: a loss summed
        over the ranks trains every prefix at once. Costs one rank-``max(ranks)`` product plus
        a cumulative sum; differentiable.

        Args:
            x: ``(B, n)``.
            ranks: ints in ``[1, r_max]``.

        Shape: ``(B, n) -> (B, K, m)`` with ``K = len(ranks)``.
        """
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.in_features:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x has shape {shape}; expected (B, {self.in_features})")
        r = torch.as_tensor(ranks, dtype=torch.long).reshape(-1)
        if r.numel() == 0 or int(r.min()) < 1 or int(r.max()) > self.r_max:
            raise ValueError(f"ranks={ranks!r} must be ints in [1, r_max={self.r_max}]")
        b, top = self.base, int(r.max())
        z = sanitize_input(x, self) @ b.V[:, :top] * b.s[:top]  # (B, top)
        y = (z[:, :, None] * b.U[:, :top].t()).cumsum(dim=1)[:, r.to(x.device) - 1]
        if b.bias is not None:
            y = y + b.bias
        return y if self.rank_bias is None else y + self.rank_bias[r.to(x.device)]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r_min={self.r_min}, "
                f"r_max={self.r_max}, num_gate_blocks={self.num_gate_blocks}")  # fmt: skip
