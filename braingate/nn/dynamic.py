"""``DynamicLowRankLayer``: per-sample rank chosen by a complexity scorer and a rank scheduler."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from braingate.energy.estimator import PerfEstimator, energy_of
from braingate.functional.lowrank import svd_factorize
from braingate.nn._optim_watch import optimizer_steps
from braingate.nn.event_linear import EventLinear
from braingate.scheduling.base import RankScheduler, check_budget, check_rank_range
from braingate.scheduling.budget import describe_range
from braingate.scheduling.masks import (
    block_ends,
    ranks_to_blocks,
    realisable_ranks,
)
from braingate.scheduling.schedulers import ComplexityRankScheduler
from braingate.scheduling.scorers import LatentScorer, scorer_flops

__all__ = ["DynamicLowRankLayer", "canonical_factors", "rank_block_ends", "sanitize_input"]

# Column norm of U and V at initialisation (factor_scale's default). A design choice, measured
# with benchmarks/adaptive_rank_accuracy.py (ADLRNS quick start: Adam lr 1e-4, 100 epochs, 5
# seeds): under Adam a column norm a moves the singular values ~a² times faster and the
# directions no faster, so at the seed's small learning rate unit columns left the factorised
# layer short of nn.Linear (BasicMotions 120-128-4 at r_max: 95.2 % vs 96.0 %); 2.5-3.5 reach
# it; at lr 3e-3 (digits_dynamic) 1 and 2.5 are within noise. LoRAven uses its own (1.75).
FACTOR_SCALE = 2.5

# Latent units the default scorer reads at most (its input width; a design choice: the first
# units carry the largest singular values, and a wider input costs FLOPs on every sample).
SCORER_UNITS = 16


def rank_block_ends(r_min: int, r_max: int, num_gate_blocks: int) -> Tensor:
    """Block ends of a rank range: the first at ``r_min``, then near-equal blocks to ``r_max``
    (``min(num_gate_blocks, r_max - r_min + 1)`` blocks, two at least when ``r_min < r_max``).

    Shape: ``(K,)`` LongTensor.
    """
    blocks = min(num_gate_blocks, r_max - r_min + 1)
    if r_min == r_max:
        return torch.tensor([r_max])
    return block_ends(r_max, max(blocks, 2), first=r_min)


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


@torch.no_grad()
def canonical_factors(U: Tensor, s: Tensor, V: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The same product ``U diag(s) Vᵀ`` with orthonormal factors and sorted singular values.

    .. math::
        U = Q_U R_U,\\; V = Q_V R_V,\\; R_U \\mathrm{diag}(s) R_V^T = P \\Sigma Q^T
        \\;\\Rightarrow\\; U' = Q_U P,\\; s' = \\mathrm{diag}(\\Sigma),\\; V' = Q_V Q

    Every prefix ``U'_{<r} diag(s'_{<r}) V'^T_{<r}`` is then the best rank-``r`` approximation
    of the product (Eckart–Young). Column signs follow the old columns where they agree, so a
    product that is already canonical keeps its factors. Cost ``O((n + m) R^2)``.

    Shape: ``(m, R), (R,), (n, R)`` in and out.
    """
    dt = U.dtype
    qu, ru = torch.linalg.qr(U.double())
    qv, rv = torch.linalg.qr(V.double())
    p, sv, qh = torch.linalg.svd((ru * s.double()) @ rv.t())
    Un, Vn = qu @ p, qv @ qh.t()
    sign = torch.sign((Un * U.double()).sum(0) + (Vn * V.double()).sum(0))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (Un * sign).to(dt), sv.to(dt), (Vn * sign).to(dt)


class _ScorerObjective(torch.autograd.Function):
    """Identity on ``y``; its backward also hands the scorer the gradient of its own objective.

    With ``g = ∂L/∂y`` (what the task loss sends back) and ``δ_i = y_i^{(r_max)} - y_i^{(r_min)}``
    (the upper units' share of sample i's output), the first-order loss increase of dropping
    sample i to ``r_min`` is :math:`\\Delta_i = -g_i \\cdot \\delta_i`. The scorer regresses the
    batch quantile of :math:`\\Delta_i`, :math:`q_i \\in [0, 1]`: loss
    :math:`\\tfrac{1}{2B} \\sum_i (c_i - q_i)^2`, whose gradient is returned for the scores.
    """

    @staticmethod
    def forward(ctx, y: Tensor, scores: Tensor, delta: Tensor) -> Tensor:
        ctx.save_for_backward(scores, delta)
        return y.clone()

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        scores, delta = ctx.saved_tensors
        gain = -(grad_y.detach() * delta).sum(dim=1)
        B = gain.numel()
        if B > 1:
            target = torch.argsort(torch.argsort(gain)).to(scores.dtype) / (B - 1)
        else:
            target = torch.full_like(scores, 0.5)
        return grad_y, (scores - target) / B, None


class DynamicLowRankLayer(nn.Module):
    """Low-rank linear layer whose active rank is chosen per sample.

    .. math::
        c_i = \\mathrm{scorer}(x_i), \\quad r_i = \\mathrm{scheduler}(c_i, \\text{budget}), \\quad
        y_i = U\\,\\mathrm{diag}(s \\odot g_i)\\,V^T x_i + b

    **Ranks.** The factors have ``capacity`` units (default ``r_max``); at inference a sample
    uses a prefix of ``r_i`` units, ``r_min <= r_i <= r_max``, realised by gate blocks: the
    first block ends at ``r_min`` (so the floor is realisable) and ``num_gate_blocks - 1``
    near-equal blocks reach ``r_max``. A scheduler rank that is not a block end is rounded
    *down* to one (never above what it asked for; ``r_min`` at least), with a one-time warning
    that names the rank used.

    **Training** (``forward`` in training mode with gradients, dense execution): every sample
    uses all ``capacity`` units, as ``nn.Linear`` would; optionally a fraction ``nested`` of
    samples sees the best rank-``r`` truncation of the current weight for a random block end
    ``r`` in ``[r_min, r_max]`` (nested dropout, Rippel et al., ICML 2014, taken in the
    canonical basis of :func:`canonical_factors`). It is off by default: measured in
    ``benchmarks/adaptive_rank_accuracy.py``, it cost up to 1.7 points at a higher learning
    rate, while the truncations of a full-rank-trained weight already hold their accuracy.
    The parameters are never re-factored behind the optimizer's back: inference reads a
    canonical copy of the factors (``prefixes="canonical"``), so every prefix is the best
    truncation of what was learned; ``forward_ranks`` training sets ``prefixes="raw"``, since
    it trains the raw prefixes themselves. The scorer is trained by its own objective (see
    :class:`_ScorerObjective`): it learns which samples' loss rises most when their rank drops
    from ``r_max`` to ``r_min`` — where rank matters — from the gradient the task loss sends
    back, with no change to the user's training loop.

    **Floor.** ``rank_floor`` (None by default) raises every planned rank to a block end;
    :class:`~braingate.train.Trainer` sets it after each epoch to the lowest rank at which the
    model's measured accuracy stays within ``train.rank_tolerance`` of ``r_max``. The
    schedulers weigh singular-value mass against energy, which says nothing about how much
    accuracy a truncation costs on the task at hand: the seed's ``energy_aware`` alpha 1 gave
    BasicMotions windows rank 4-12 and cost 7 points, while digits held its accuracy there.

    **Budget** (mJ per sample, as priced by ``estimator``, the scorer included) is a hard cap:
    no sample's rank costs more, even if that means fewer than ``r_min`` units. A budget that
    can never bind, or always binds, warns once with the layer's energy range.

    The factors live in an :class:`EventLinear` (``self.base``), so ``execution="event"``
    runs the same per-sample gates through its event path (one step ``(B, n)`` per call).

    Args:
        in_features, out_features: ``n``, ``m``.
        r_max, r_min: rank range at inference, ``1 <= r_min <= r_max <= min(n, m)``.
        scorer_hidden: hidden width of the default learned scorer.
        num_gate_blocks: gate blocks in ``[r_min, r_max]`` (fewer when fewer ranks lie there).
        scheduler: a ``RankScheduler`` (or name, or anything with ``schedule_rank``);
            default ``ComplexityRankScheduler(r_min, r_max)``.
        estimator: prices a rank (default ``PerfEstimator()``); ``estimate`` may return a dict
            with ``energy_mJ`` or a number (batch energy, mJ).
        bias: learn a bias. scorer: replaces the learned scorer (e.g. ``InputChangeScorer()``);
            default :class:`LatentScorer` on the first ``min(r_min, 16)`` latent units.
        rank_bias: also learn a "switchable" bias per realised rank, ``y_i += c_{r_i}`` (a
            table ``(capacity + 1, m)``, zero-initialised: one row read per sample, no FLOPs;
            its rows belong to prefix lengths, so re-factoring keeps them).
        capacity: factor units, ``r_max <= capacity <= min(n, m)``. Units past ``r_max`` are
            trained but never active at inference (train wide, run narrow).
        nested: fraction of training samples at a random prefix rank, in ``[0, 1]``.
        gate_unit: block size of ``self.base`` (its event-path gate granularity); default the
            largest that divides every block end and ``capacity``.
        factor_scale: column norm of ``U`` and ``V`` at initialisation (``s`` divided by its
            square: the same product). Larger columns turn the singular directions more
            slowly under Adam's per-entry steps and move the singular values faster; default
            ``FACTOR_SCALE`` (2.5, measured at the ADLRNS seed's lr 1e-4); see
            :class:`~braingate.nn.loraven.LoRAven`, which uses 1.75.

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
        rank_bias: bool = False,
        capacity: int | None = None,
        nested: float = 0.0,
        gate_unit: int | None = None,
        factor_scale: float = FACTOR_SCALE,
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
        capacity = r_max if capacity is None else capacity
        if (
            not isinstance(capacity, int)
            or isinstance(capacity, bool)
            or not r_max <= capacity <= full
        ):
            raise ValueError(
                f"capacity={capacity!r} must be an int in [r_max={r_max}, min(in, out)={full}]"
            )
        if not isinstance(factor_scale, (int, float)) or not 0 < factor_scale < math.inf:
            raise ValueError(f"factor_scale={factor_scale!r} must be a positive number")
        if not isinstance(nested, (int, float)) or isinstance(nested, bool) or not 0 <= nested <= 1:
            raise ValueError(f"nested={nested!r} must be a fraction in [0, 1]")
        self._warned: set[str] = set()
        self.in_features, self.out_features = in_features, out_features
        self.capacity, self.nested = capacity, float(nested)
        self.factor_scale = float(factor_scale)
        self.num_gate_blocks = num_gate_blocks
        self.r_min, self.r_max = r_min, r_max
        self.register_buffer(
            "ends", rank_block_ends(r_min, r_max, self.num_gate_blocks), persistent=False
        )
        if gate_unit is None:
            gate_unit = math.gcd(capacity, *self.ends.tolist())
        if not isinstance(gate_unit, int) or gate_unit < 1 or capacity % gate_unit:
            raise ValueError(
                f"gate_unit={gate_unit!r} must be a positive divisor of capacity={capacity}"
            )
        self.gate_unit = gate_unit
        self._ev_blocks = capacity // gate_unit
        self.base = EventLinear(in_features, out_features, capacity, blocks=self._ev_blocks, bias=bias,
                                device=device, dtype=dtype)  # fmt: skip
        self._init_spectrum()
        self.rank_bias = (
            nn.Parameter(torch.zeros(capacity + 1, out_features, device=device, dtype=dtype))
            if rank_bias
            else None
        )
        self.scorer = (
            scorer
            if scorer is not None
            else LatentScorer(min(r_min, SCORER_UNITS), scorer_hidden, device, dtype)
        )
        self._own_scheduler = scheduler is None or isinstance(scheduler, str)
        self.scheduler = scheduler
        self.estimator = estimator if estimator is not None else PerfEstimator()
        self._energy_cache: dict[tuple, Tensor] = {}
        self.budget: float | None = None  # used when forward() gets budget=None (e.g. Trainer)
        # inference truncates the canonical re-factoring ("canonical") or the factors as they
        # are ("raw": set by forward_ranks, which trains the raw prefixes themselves)
        self.prefixes = "canonical"
        self._canon: tuple | None = None  # (factor versions it is exact for, canonical factors)
        self._canon_seen, self._canon_age = None, 0  # versions last seen in training, steps since
        self._base_canonical = None  # scaled factors: the event path canonicalises first
        self._rank_floor: int | None = None  # calibrated floor (a block end), see rank_floor
        self.force_rank: int | None = None  # every sample at this block end (calibration)
        self.last_ranks: Tensor | None = None
        self.last_train_ranks: Tensor | None = None
        self.last_scores: Tensor | None = None
        self.last_soft_rank: Tensor | None = None
        self.last_energy_mJ: Tensor | None = None

    def _init_spectrum(self) -> None:
        """Factor an ``nn.Linear``-style random weight (uniform in ``±1/√n``), so ``s`` decays
        like a real spectrum; ``U``, ``V`` columns get norm ``factor_scale``."""
        n, m, r = self.in_features, self.out_features, self.capacity
        a = self.factor_scale
        with torch.no_grad():
            w = torch.empty(m, n, device=self.base.U.device).uniform_(-1.0, 1.0) / math.sqrt(n)
            if n * m <= 1 << 19:
                U, s, V, _ = svd_factorize(w, r)
            else:
                U, s, V = torch.svd_lowrank(w, q=min(r + 8, min(n, m)), niter=2)
                U, s, V = U[:, :r], s[:r], V[:, :r]
            self.base.U.copy_(a * U)
            self.base.s.copy_(s / (a * a))
            self.base.V.copy_(a * V)

    # -- configuration ------------------------------------------------------------------------
    @property
    def scheduler(self) -> Any:
        """The rank scheduler (assignable: any object with ``schedule_rank``)."""
        return self._scheduler

    @scheduler.setter
    def scheduler(self, value: Any) -> None:
        own = value is None or isinstance(value, str)
        if value is None:
            value = ComplexityRankScheduler(self.r_min, self.r_max)
        elif isinstance(value, str):
            value = RankScheduler(value, r_min=self.r_min, r_max=self.r_max)
        if not callable(getattr(value, "schedule_rank", None)):
            raise TypeError(
                f"scheduler={value!r} has no schedule_rank(); pass a RankScheduler or a name"
            )
        self._scheduler = value
        self._own_scheduler = own
        self._warned.discard("realise")

    def set_rank_range(self, r_min: int, r_max: int) -> None:
        """Change the inference rank range (e.g. a LoRAven mode switch); factors are kept.

        ``r_max`` may not exceed ``capacity``. Block ends are rebuilt (``r_min`` first); an
        end that the event-path gate (blocks of ``gate_unit`` units) cannot realise is rounded
        down to a multiple of ``gate_unit`` with a warning. A scheduler the layer built itself
        follows the new range; one you passed keeps its own, and its ranks are realised as
        usual.
        """
        r_min, r_max = check_rank_range(r_min, r_max)
        if r_max > self.capacity:
            raise ValueError(
                f"r_max={r_max} exceeds this layer's capacity={self.capacity} factor units; "
                f"pass r_max<={self.capacity} (or build the layer with capacity>={r_max})"
            )
        ends = rank_block_ends(r_min, r_max, self.num_gate_blocks)
        if self.gate_unit > 1 and bool((ends % self.gate_unit).any()):
            want = ends.tolist()
            ends = torch.unique((ends // self.gate_unit).clamp(min=1) * self.gate_unit)
            warnings.warn(
                f"rank range [{r_min}, {r_max}] needs block ends {want}, but the event-path "
                f"gate switches blocks of gate_unit={self.gate_unit} units; using ends "
                f"{ends.tolist()} instead (rounded down). Build the layer with gate_unit=1 "
                "for every rank to be realisable",
                RuntimeWarning,
                stacklevel=2,
            )
            r_min, r_max = int(ends[0]), int(ends[-1])
        self.r_min, self.r_max = r_min, r_max
        self.ends = ends.to(self.ends.device)
        self._energy_cache.clear()
        self._warned -= {"never", "always", "realise"}
        if self._rank_floor is not None:  # kept, within the new range
            self.rank_floor = min(max(self._rank_floor, r_min), r_max)
        if self._own_scheduler:
            self._scheduler.r_min, self._scheduler.r_max = r_min, r_max

    @property
    def rank_floor(self) -> int | None:
        """Smallest rank inference gives any sample (a block end), or None: the scheduler's
        ranks are raised to it (a budget still caps them). ``Trainer`` sets it each epoch to
        the lowest block end whose measured accuracy stays within ``train.rank_tolerance`` of
        ``r_max`` (see :meth:`braingate.train.Trainer.calibrate_rank_floors`). A value that is
        not a block end is rounded up to the next one. :meth:`set_rank_range` (a LoRAven mode
        switch) keeps it, moved into the new range; assign None to drop it."""
        return self._rank_floor

    @rank_floor.setter
    def rank_floor(self, value: int | None) -> None:
        if value is None:
            self._rank_floor = None
            return
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= self.r_max:
            raise ValueError(
                f"rank_floor={value!r} must be None or an int in [1, r_max={self.r_max}]"
            )
        ends = self.ends.cpu()
        self._rank_floor = int(ends[int(torch.searchsorted(ends, torch.tensor(value)))])

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

    @torch.no_grad()
    def canonicalize(self) -> None:
        """Re-factor ``self.base`` in place with :func:`canonical_factors` (the product is
        unchanged), so its own prefixes and blocks are the best truncations.

        Dense inference does not need it (it reads a canonical copy); the event path calls it
        before stepping. Never called during training: it would leave an optimizer's
        per-entry state (Adam's moments) describing other coordinates.
        """
        b = self.base
        U, s, V = canonical_factors(b.U, b.s, b.V)
        b.U.copy_(U), b.s.copy_(s), b.V.copy_(V)
        b.refresh()
        self._base_canonical = self._versions()

    def _versions(self) -> tuple[int, ...]:
        """What identifies the factors' values: their tensors, version counters, and the
        process's optimizer-step count (fused optimizers move no version counter)."""
        b = self.base
        return (id(b.U), b.U._version, id(b.s), b.s._version, id(b.V), b.V._version,
                optimizer_steps())  # fmt: skip

    def refresh(self) -> None:
        """Forget the cached canonical copy (after ``.data`` edits, which nothing notices)."""
        self._canon = None
        self._base_canonical = None
        self.base.refresh()

    # Optimizer steps between refreshes of the canonical basis that training reads (nested
    # samples, the scorer's input and target). A design choice: a stale basis only makes those
    # projections slightly off the best truncations, and each refresh costs O((n + m) R^2).
    BASIS_EVERY = 10

    def canonical(self, fresh: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """Canonical factors ``(U_c, s_c, V_c)`` of the current weights, detached and cached.

        ``fresh=False`` (training) reuses a copy up to ``BASIS_EVERY`` optimizer steps old;
        an optimizer step is seen as a change of the factors' versions.
        """
        now = self._versions()
        if self._canon is not None and self._canon[0] == now:
            return self._canon[1]  # exact for the current factors
        if self._canon is not None and not fresh:
            if now != self._canon_seen:  # an optimizer step since the last training forward
                self._canon_seen, self._canon_age = now, self._canon_age + 1
            if self._canon_age < self.BASIS_EVERY:
                return self._canon[1]
        b = self.base
        self._canon = (now, canonical_factors(b.U.detach(), b.s.detach(), b.V.detach()))
        self._canon_seen, self._canon_age = now, 0
        return self._canon[1]

    # -- state ----------------------------------------------------------------------------------
    def get_extra_state(self) -> dict:
        """The rank range and which prefixes inference uses (kept in ``state_dict``)."""
        return {"r_min": self.r_min, "r_max": self.r_max, "prefixes": self.prefixes,
                "rank_floor": self._rank_floor}  # fmt: skip

    def set_extra_state(self, state: dict) -> None:
        if not isinstance(state, dict) or not {"r_min", "r_max"} <= set(state):
            raise ValueError(
                f"extra state {state!r} lacks r_min/r_max; not a DynamicLowRankLayer's"
            )
        if (state["r_min"], state["r_max"]) != (self.r_min, self.r_max):
            self.set_rank_range(int(state["r_min"]), int(state["r_max"]))
        self.prefixes = str(state.get("prefixes", "canonical"))
        floor = state.get("rank_floor")
        self.rank_floor = None if floor is None else int(floor)

    # -- energy ---------------------------------------------------------------------------------
    def scorer_energy_mJ(self) -> float:
        """Per-sample energy of the scorer (mJ): its FLOPs at the estimator's price per FLOP
        (0 when either is unknown, or when ``r_min == r_max`` and it is not run), plus latent
        units it reads above ``r_min``."""
        flops = scorer_flops(self.scorer, self.in_features)
        per_flop = getattr(self.estimator, "energy_per_flop_mJ", None)
        if flops is None or per_flop is None or self.r_min == self.r_max:
            return 0.0
        extra = max(0, int(getattr(self.scorer, "units", 0) or 0) - self.r_min)
        return (flops + extra * 2.0 * self.in_features) * float(per_flop)

    def energy_table(self, batch_size: int) -> Tensor:
        """Per-sample energy (mJ) at each block end, ``(K,)`` float64: the estimator's price of
        the rank plus the scorer's."""
        key = (batch_size, id(self.estimator), id(self.scorer), tuple(self.ends.tolist()))
        if key not in self._energy_cache:
            dims = (self.in_features, self.out_features)
            extra = self.scorer_energy_mJ()
            vals = [energy_of(self.estimator.estimate(dims, int(r), batch_size=batch_size)) / batch_size + extra
                    for r in self.ends.tolist()]  # fmt: skip
            self._energy_cache[key] = torch.tensor(vals, dtype=torch.float64)
        return self._energy_cache[key]

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message + " (warned once)", RuntimeWarning, stacklevel=4)

    # -- planning -------------------------------------------------------------------------------
    def plan(self, scores: Tensor, budget: Any = None) -> tuple[Tensor, Tensor]:
        """Ranks ``(B,)`` and active-block counts ``(B,)`` for detached ``scores``."""
        budget = check_budget(budget)
        B = scores.shape[0]
        energy = self.energy_table(B)
        ends = self.ends.cpu()
        if self.force_rank is not None:  # calibration: the scheduler (and its state) is skipped
            used = torch.full((B,), int(self.force_rank), dtype=torch.long)
            nb = ranks_to_blocks(realisable_ranks(used, ends), ends)
            return torch.cat([ends.new_zeros(1), ends])[nb], nb
        out = self._scheduler.schedule_rank(
            scores.detach().cpu(), budget=budget, candidates=ends, energy=energy,
            singular_values=self._spectrum()[: self.r_max].cpu(),
            layer_dims=(self.in_features, self.out_features),
        )  # fmt: skip
        ranks = (
            torch.as_tensor(out, dtype=torch.long).cpu().reshape(-1).expand(B)
            if not isinstance(out, Tensor) or out.numel() == 1
            else out.long().cpu().reshape(-1)
        )
        if ranks.numel() != B:
            raise ValueError(f"scheduler returned {ranks.numel()} ranks for a batch of {B}")
        used = realisable_ranks(ranks.clamp(max=self.r_max), ends)
        off = (used != ranks).nonzero()
        if off.numel():
            i = int(off[0, 0])
            why = (
                f"r_max={self.r_max}" if int(ranks[i]) > self.r_max
                else f"r_min={self.r_min}, the layer's floor" if int(ranks[i]) < self.r_min
                else "the largest block end not above it, so a cap the scheduler sets holds"
            )  # fmt: skip
            self._warn_once("realise", (
                f"{type(self._scheduler).__name__} asked for rank {int(ranks[i])} "
                f"({off.numel()} of {B} samples asked for ranks the gate blocks cannot realise); "
                f"used rank {int(used[i])}: {why}. Gate blocks end at {ends.tolist()}; pass "
                f"num_gate_blocks={self.r_max - self.r_min + 1} to realise every rank in "
                f"[r_min, r_max]"))  # fmt: skip
        if self._rank_floor is not None:
            used = used.clamp(min=self._rank_floor)
        nb = ranks_to_blocks(used, ends)
        if budget is not None:
            b = torch.as_tensor(budget, dtype=torch.float64).reshape(-1).expand(B)
            self._check_budget_range(b, energy, B)
            fits = energy[None, :] <= b[:, None]
            cap = torch.where(fits, torch.arange(1, len(energy) + 1), 0).max(dim=1).values
            nb = torch.minimum(nb, cap)
        pad = torch.cat([ends.new_zeros(1), ends])
        return pad[nb], nb

    def _spectrum(self) -> Tensor:
        """Singular values of the factors inference truncates (what schedulers weigh)."""
        if self.prefixes == "canonical":
            return self.canonical(fresh=not (self.training and torch.is_grad_enabled()))[1]
        return self.base.s.detach().abs()

    def _check_budget_range(self, b: Tensor, energy: Tensor, batch: int) -> None:
        rng = describe_range(energy, self.ends.tolist(), self.estimator, batch)
        if bool((b >= energy[-1]).all()):
            self._warn_once("never", (
                f"budget={float(b.min()):.3g} mJ per sample never binds: {rng}; a budget in "
                "that range caps ranks, None means no cap"))  # fmt: skip
        elif bool((b < energy[0]).any()):
            self._warn_once("always", (
                f"budget={float(b.min()):.3g} mJ per sample is below the energy of "
                f"r_min={self.r_min} for some samples, so their rank goes below r_min: {rng}"))  # fmt: skip

    # -- forward -------------------------------------------------------------------------------
    def _scores(self, U, s, V, x2: Tensor, z: Tensor | None) -> Tensor:
        """Scores from the input, or from the first latent units ``z = s ⊙ Vᵀx`` of the factors
        inference uses (given, or computed here)."""
        if self.r_min == self.r_max:  # one rank to give: the scorer is not run (nor charged)
            return torch.full((x2.shape[0],), 0.5, dtype=x2.dtype, device=x2.device)
        if getattr(self.scorer, "reads", "input") == "latent":
            k = self.scorer.units
            if z is None:
                z = x2 @ V[:, :k] * s[:k]
            return self.scorer(z[:, :k].detach())
        return self.scorer(x2)

    def forward(self, x: Tensor, budget: Any = None) -> tuple[Tensor, Tensor]:
        """Returns ``(y, ranks)``; ``ranks`` is a LongTensor with the scheduler's rank per sample
        (what inference spends on it; ``last_ranks``, ``last_energy_mJ`` and ``last_soft_rank``
        hold the same plan). In training the layer computes wider: ``last_train_ranks`` holds
        the ranks it used (``capacity``, or a nested rank)."""
        if not isinstance(x, Tensor) or x.shape[-1:] != (self.in_features,):
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x has shape {shape}; expected (..., {self.in_features})")
        x = sanitize_input(x, self)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        dev, b = x.device, self.base
        learning = self.training and torch.is_grad_enabled() and b.execution == "dense"
        budget = self.budget if budget is None else budget
        if b.execution != "dense":
            if x.dim() != 2:
                raise ValueError(
                    f"execution={self.execution!r} takes one step (B, {self.in_features})"
                )
            if self.prefixes == "canonical" and self._base_canonical != self._versions():
                self.canonicalize()
            scores = self._scores(b.U, b.s, b.V, x2, None)
            ranks, _ = self._record(scores, budget, x.dtype, dev)
            units = ranks.to(dev)
            gate = torch.arange(self._ev_blocks, device=dev) * self.gate_unit < units[:, None]
            self.base.set_active_blocks(gate)
            return self._add_rank_bias(self.base(x2), ranks), ranks
        if not learning:  # compute only the units some sample uses
            U, s, V = self.canonical() if self.prefixes == "canonical" else (b.U, b.s, b.V)
            scores = self._scores(U, s, V, x2, None)
            planned, _ = self._record(scores, budget, x.dtype, dev)
            top = max(int(planned.max()), 1) if planned.numel() else 1
            units = torch.arange(top, device=dev)
            gate = (units < planned.to(dev)[:, None]).to(x.dtype)
            z = x2 @ V[:, :top] * s[:top]
            y = torch.nn.functional.linear(z * gate, U[:, :top], b.bias)
            return self._add_rank_bias(y, planned).reshape(*lead, self.out_features), planned
        return self._train_forward(x2, budget, lead)

    def _train_forward(self, x2: Tensor, budget: Any, lead: tuple) -> tuple[Tensor, Tensor]:
        """Every unit trains; nested samples see the best rank-``r`` truncation of the current
        weight, :math:`W V_c^{(r)} V_c^{(r)T}`, with the canonical basis ``V_c`` held fixed."""
        b, dev, N = self.base, x2.device, x2.shape[0]
        ranks = torch.full((N,), self.capacity, dtype=torch.long)
        if self.nested > 0:
            pick = torch.rand(N) < self.nested
            ranks[pick] = self.ends.cpu()[torch.randint(len(self.ends), (int(pick.sum()),))]
        needs_basis = self.nested > 0 or getattr(self.scorer, "reads", "input") == "latent"
        Uc, sc, Vc = self.canonical(fresh=False) if needs_basis else (None, None, None)
        zc = None if Vc is None else x2.detach() @ Vc  # canonical coordinates of x (unscaled)
        x_in = x2
        if self.nested > 0 and bool((ranks < self.capacity).any()):
            keep = torch.arange(self.capacity, device=dev) < ranks.to(dev)[:, None]
            nested = (ranks < self.capacity).to(dev)[:, None]
            x_in = torch.where(nested, (zc * keep) @ Vc.t(), x2)
        y = torch.nn.functional.linear(x_in @ b.V * b.s, b.U, b.bias)
        y = self._add_rank_bias(y, ranks)
        scores = self._scores(Uc, sc, Vc, x2, None if zc is None else zc * sc)
        planned, _ = self._record(scores, budget, x2.dtype, dev)
        if scores.requires_grad:
            lo, hi = self.r_min, self.r_max
            delta = (zc[:, lo:hi] * sc[lo:hi]) @ Uc[:, lo:hi].t()  # upper units' output share
            y = _ScorerObjective.apply(y, scores, delta)
        self.last_train_ranks = ranks
        return y.reshape(*lead, self.out_features), planned

    def _record(
        self, scores: Tensor, budget: Any, dtype: torch.dtype, dev
    ) -> tuple[Tensor, Tensor]:
        """Plan ranks from ``scores`` and keep the per-sample records (``last_*``)."""
        ranks, nb = self.plan(scores, budget)
        rho = self.r_min + scores * (self.r_max - self.r_min)
        self.last_scores, self.last_ranks = scores.detach(), ranks
        scorer_e = torch.tensor([self.scorer_energy_mJ()], dtype=torch.float64)
        self.last_energy_mJ = torch.cat([scorer_e, self.energy_table(len(ranks))])[nb]
        # straight-through rank: value = planned rank, gradient through the scorer (energy penalty)
        self.last_soft_rank = ranks.to(dev, dtype) + rho - rho.detach()
        return ranks, nb

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
            ranks: ints in ``[1, capacity]``.

        Shape: ``(B, n) -> (B, K, m)`` with ``K = len(ranks)``.
        """
        if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != self.in_features:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x has shape {shape}; expected (B, {self.in_features})")
        r = torch.as_tensor(ranks, dtype=torch.long).reshape(-1)
        if r.numel() == 0 or int(r.min()) < 1 or int(r.max()) > self.capacity:
            raise ValueError(f"ranks={ranks!r} must be ints in [1, capacity={self.capacity}]")
        if self.training and torch.is_grad_enabled():
            self.prefixes = "raw"  # these very prefixes are being trained: inference uses them
        b, top = self.base, int(r.max())
        z = sanitize_input(x, self) @ b.V[:, :top] * b.s[:top]  # (B, top)
        y = (z[:, :, None] * b.U[:, :top].t()).cumsum(dim=1)[:, r.to(x.device) - 1]
        if b.bias is not None:
            y = y + b.bias
        return y if self.rank_bias is None else y + self.rank_bias[r.to(x.device)]

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r_min={self.r_min}, "
                f"r_max={self.r_max}, capacity={self.capacity}, num_gate_blocks={len(self.ends)}, "
                f"nested={self.nested}")  # fmt: skip
