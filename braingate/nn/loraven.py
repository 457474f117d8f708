"""``LoRAven``: a drop-in ``nn.Linear`` replacement with mode presets over DynamicLowRankLayer."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from braingate.nn.dynamic import (
    SCORER_UNITS,
    DynamicLowRankLayer,
    rank_block_ends,
    sanitize_input,
)
from braingate.scheduling.scorers import LatentScorer

__all__ = ["MODE_PRESETS", "LoRAven", "ModePreset", "mode_ranks", "output_floor", "preset_ranks"]

# Column norm of the factors at initialisation (DynamicLowRankLayer's factor_scale). A design
# choice, measured with benchmarks/adaptive_rank_accuracy.py: with unit columns, LoRAven's
# full-rank training ended up to ~1 point below nn.Linear (BasicMotions; 3-layer digits at lr
# 3e-3); 1.75 closed most of that gap; 2 made rank-4 truncations after a few steps worse and
# 3 lost 5 points at low ranks.
FACTOR_SCALE = 1.75


@dataclass(frozen=True)
class ModePreset:
    """A mode of REFERENCES.md §G: rank ratios of ``min(in, out)``, energy multiplier, sizes,
    and the output-width floor constant ``floor_width`` (see :func:`output_floor`)."""

    max_rank_ratio: float
    min_rank_ratio: float
    energy_multiplier: float
    scorer_hidden: int
    num_gate_blocks: int
    floor_width: int


# REFERENCES.md §G (the LoRAven/ADLRNS seed's modes); floor_width is ours (see output_floor).
MODE_PRESETS: dict[str, ModePreset] = {
    "high_performance": ModePreset(0.8, 0.3, 1.5, 64, 16, 16),
    "balanced": ModePreset(0.5, 0.2, 1.0, 32, 8, 12),
    "low_power": ModePreset(0.3, 0.1, 0.7, 16, 4, 8),
}


def preset_ranks(in_features: int, out_features: int, mode: str) -> tuple[int, int]:
    """The seed's ranks: ``max_rank = max(4, ⌊min·ratio⌋)``, ``min_rank = max(2, ⌊min·min_ratio⌋)``,
    clipped to ``min(in, out)``."""
    p, full = MODE_PRESETS[mode], min(in_features, out_features)
    r_max = min(full, max(4, math.floor(full * p.max_rank_ratio)))
    return r_max, min(r_max, max(2, math.floor(full * p.min_rank_ratio)))


def output_floor(out_features: int, full: int, mode: str) -> int:
    """Rank floor tied to the layer's output width ``m``:

    .. math:: f(m) = \\min(\\mathrm{full},\\; m - 1,\\; K)

    with ``K`` the mode's ``floor_width``. A narrow output (the logits of an ``m``-class
    classifier) keeps ``m - 1`` ranks: softmax ignores a shift common to all logits, so
    ``m - 1`` directions are what ``m`` independent outputs need. A wide output's floor is
    ``K``. The seed's ratios alone give a 10-class head rank 2–5, which costs its accuracy
    (measured in ``benchmarks/adaptive_rank_accuracy.py``).
    """
    K = MODE_PRESETS[mode].floor_width
    return max(1, min(full, out_features - 1, K))


def mode_ranks(in_features: int, out_features: int, mode: str) -> tuple[int, int]:
    """``(r_min, r_max)`` of a mode: the seed's ranks, the floor raised to :func:`output_floor`
    (and ``r_max`` with it when needed)."""
    r_max, r_min = preset_ranks(in_features, out_features, mode)
    r_min = max(r_min, output_floor(out_features, min(in_features, out_features), mode))
    return r_min, max(r_max, r_min)


class LoRAven(nn.Module):
    """Adaptive low-rank linear layer with the seed's modes; ``forward(x) -> y``.

    .. math:: y_i = U\\,\\mathrm{diag}(s \\odot g_i)\\,V^T x_i + b, \\quad
              E(r_i) \\le \\text{energy\\_budget}

    Modes (REFERENCES.md §G): ``high_performance``, ``balanced`` (default), ``low_power`` set
    the inference rank range ``[r_min, r_max]`` (:func:`mode_ranks`: the seed's ratios with a
    floor tied to the output width) and the default ``energy_budget``: the mode's energy
    multiplier times the energy of ``r_max`` (at least that of ``r_min``), so ``low_power``
    (0.7×) caps ranks below ``r_max`` while the other modes do not bind. ``custom`` takes
    ``max_rank``/``min_rank`` (they also override a preset's ranks).

    The factors have ``capacity`` units (default the full rank ``min(in, out)``, or
    ``max_rank`` when given): the layer trains like ``nn.Linear`` and runs at the mode's ranks
    (see :class:`DynamicLowRankLayer` for nested training and re-factoring). Assigning
    ``mode`` (or ``_current_mode``, as the guide's ``EventDrivenLoRAven`` does) at run time
    switches the range and the default budget. NaN/Inf inputs warn once and are treated as 0.

    Args:
        in_features, out_features: sizes. mode: preset name.
        max_rank, min_rank: rank range (required for ``custom`` unless defaults suit).
        energy_budget: mJ per sample (>= 0) or None for the mode default.
        bias: learn a bias. device: where to place the parameters.
        **kw: passed to :class:`DynamicLowRankLayer` (``scheduler``, ``estimator``, ``scorer``,
            ``capacity``, ``nested``).

    Shape: ``(..., in_features) -> (..., out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        mode: str = "balanced",
        max_rank: int | None = None,
        min_rank: int | None = None,
        energy_budget: float | None = None,
        bias: bool = True,
        device: torch.device | str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__()
        known = [*MODE_PRESETS, "custom"]
        if mode not in known:
            raise ValueError(f"unknown mode {mode!r}; known: {', '.join(known)}")
        for key, val in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"{key}={val!r} must be a positive int")
        if energy_budget is not None and (
            not isinstance(energy_budget, (int, float))
            or not energy_budget >= 0
            or math.isinf(energy_budget)
        ):
            raise ValueError(
                f"energy_budget={energy_budget!r} must be a finite energy >= 0 in mJ per sample"
            )
        n, m, full = in_features, out_features, min(in_features, out_features)
        base_mode = "balanced" if mode == "custom" else mode
        r_min, r_max = mode_ranks(n, m, base_mode)
        if max_rank is not None:
            r_max = max_rank
            r_min = min(r_min, r_max) if isinstance(r_max, int) else r_min
        if min_rank is not None:
            r_min = min_rank
        self._fixed = (min_rank, max_rank)  # user ranks override every mode's
        preset = MODE_PRESETS[base_mode]
        user_hidden = "scorer_hidden" in kw
        capacity = kw.pop("capacity", None)
        if capacity is None:
            capacity = max_rank if isinstance(max_rank, int) and max_rank <= full else full
        blocks = (
            min(preset.num_gate_blocks, r_max)
            if isinstance(r_max, int) and r_max > 0
            else preset.num_gate_blocks
        )
        hidden = kw.setdefault("scorer_hidden", preset.scorer_hidden)
        kw.setdefault("factor_scale", FACTOR_SCALE)
        ranges = [self._range(n, m, md, capacity) for md in MODE_PRESETS] + [(r_min, r_max)]
        ok = [(lo, hi) for lo, hi in ranges if isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi]  # fmt: skip
        if "scorer" not in kw and ok:
            k = min(SCORER_UNITS, *(lo for lo, _ in ok))
            # the preset's width is for an MLP on the input; on k latent units 2k suffices
            kw["scorer"] = LatentScorer(k, hidden if user_hidden else min(hidden, 2 * k), device)
        if "gate_unit" not in kw and ok and isinstance(capacity, int):
            ends = [e for lo, hi in ok for e in rank_block_ends(lo, hi, blocks).tolist()]
            kw["gate_unit"] = math.gcd(capacity, *ends)
        self.layer = DynamicLowRankLayer(n, m, r_max, r_min, num_gate_blocks=blocks, bias=bias,
                                         capacity=capacity, device=device, **kw)  # fmt: skip
        self.in_features, self.out_features = n, m
        self._mode, self.preset = mode, preset
        self._user_budget = None if energy_budget is None else float(energy_budget)
        self._batch = 1
        self._stats: dict[str, float] = {"current_rank": float(self.layer.r_max), "energy_consumption": 0.0,
                                         "budget_usage": 0.0, "latency_ms": 0.0, "batch_size": 0}  # fmt: skip

    # -- modes ----------------------------------------------------------------------------------
    def _range(self, n: int, m: int, mode: str, capacity: int) -> tuple[int, int]:
        lo, hi = mode_ranks(n, m, mode)
        lo = self._fixed[0] if self._fixed[0] is not None else lo
        hi = self._fixed[1] if self._fixed[1] is not None else hi
        return min(lo, capacity), min(max(hi, lo), capacity)

    @property
    def mode(self) -> str:
        """The active mode; assign a preset name to switch ranks and default budget now."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODE_PRESETS and value != "custom":
            raise ValueError(
                f"unknown mode {value!r}; known: {', '.join([*MODE_PRESETS, 'custom'])}"
            )
        if value != "custom":
            lay = self.layer
            full = min(self.in_features, self.out_features)
            want = self._range(self.in_features, self.out_features, value, full)
            got = self._range(self.in_features, self.out_features, value, lay.capacity)
            if got != want:
                warnings.warn(
                    f"mode {value!r} wants ranks [{want[0]}, {want[1]}] but this layer has "
                    f"capacity={lay.capacity} factor units; using [{got[0]}, {got[1]}]. Build "
                    f"it with capacity>={want[1]} to switch up at run time",
                    RuntimeWarning,
                    stacklevel=2,
                )
            lay.set_rank_range(*got)
            self.preset = MODE_PRESETS[value]
        self._mode = value

    # the LoRAven guide's EventDrivenLoRAven switches modes through this name
    _current_mode = mode

    def get_extra_state(self) -> dict:
        """The mode and a budget you gave (kept in ``state_dict``)."""
        return {"mode": self._mode, "energy_budget": self._user_budget}

    def set_extra_state(self, state: dict) -> None:
        if not isinstance(state, dict) or "mode" not in state:
            raise ValueError(f"extra state {state!r} lacks 'mode'; not a LoRAven's")
        if state["mode"] != self._mode:
            self.mode = state["mode"]
        self.energy_budget = state.get("energy_budget")

    @property
    def max_rank(self) -> int:
        return self.layer.r_max

    @property
    def min_rank(self) -> int:
        return self.layer.r_min

    @property
    def energy_budget(self) -> float:
        """Per-sample cap (mJ): the one given, or the mode's default at the last batch size."""
        if self._user_budget is not None:
            return self._user_budget
        table = self.layer.energy_table(self._batch)
        return max(float(table[0]), self.preset.energy_multiplier * float(table[-1]))

    @energy_budget.setter
    def energy_budget(self, value: float | None) -> None:
        if value is not None and (not isinstance(value, (int, float)) or not 0 <= value < math.inf):
            raise ValueError(
                f"energy_budget={value!r} must be a finite energy >= 0 in mJ per sample"
            )
        self._user_budget = None if value is None else float(value)

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        x = sanitize_input(x, self)
        self._batch = max(1, x.numel() // self.in_features)
        budget = self.energy_budget
        if self._user_budget is None and budget >= float(self.layer.energy_table(self._batch)[-1]):
            budget = None  # the mode's default does not bind: no cap to apply (or warn about)
        y, _ = self.layer(x, budget=budget)
        with torch.no_grad():
            planned = self.layer.last_ranks
            energy = float(self.layer.last_energy_mJ.mean())
            mean_rank = float(planned.float().mean())
            est = self.layer.estimator.estimate((self.in_features, self.out_features), round(mean_rank),
                                                batch_size=len(planned))  # fmt: skip
            latency = float(est.get("latency_s", 0.0)) * 1e3 if isinstance(est, dict) else 0.0
            cap = self.energy_budget
            self._stats = {
                "current_rank": mean_rank,
                "energy_consumption": energy,
                "budget_usage": energy / cap if cap > 0 else math.inf,
                "latency_ms": latency,
                "batch_size": len(planned),
            }
        return y

    def get_current_rank(self) -> float:
        """Mean rank the scheduler gave the last batch (per sample; what inference spends)."""
        return self._stats["current_rank"]

    def get_rank_per_sample(self) -> Tensor | None:
        """The last batch's per-sample ranks, LongTensor ``(B,)``."""
        return self.layer.last_ranks

    def get_budget_usage(self) -> float:
        """Mean energy per sample of the last batch / ``energy_budget``."""
        return self._stats["budget_usage"]

    def get_compression_ratio(self) -> float:
        """Parameters in use at the current rank / a dense layer's: ``r(n+m+1) / (nm)``."""
        n, m = self.in_features, self.out_features
        return self._stats["current_rank"] * (n + m + 1) / (n * m)

    def get_performance_stats(self) -> dict[str, Any]:
        """``current_rank``, ``energy_consumption`` (mJ/sample, scorer included),
        ``budget_usage``, ``compression_ratio``, ``latency_ms`` (estimator roofline),
        ``energy_budget``, ``energy_range_mJ`` (at ``r_min`` and ``r_max``), ``mode``."""
        table = self.layer.energy_table(self._batch)
        return {**self._stats, "compression_ratio": self.get_compression_ratio(),
                "energy_budget": self.energy_budget, "mode": self.mode,
                "energy_range_mJ": (float(table[0]), float(table[-1]))}  # fmt: skip

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, energy_budget={self.energy_budget:.3g} mJ"
