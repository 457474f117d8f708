"""``LoRAven``: a drop-in ``nn.Linear`` replacement with mode presets over DynamicLowRankLayer."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from braingate.energy.estimator import energy_of
from braingate.nn.dynamic import DynamicLowRankLayer, sanitize_input

__all__ = ["MODE_PRESETS", "LoRAven", "ModePreset"]


@dataclass(frozen=True)
class ModePreset:
    """A mode of REFERENCES.md §G: rank ratios of ``min(in, out)``, energy multiplier, sizes."""

    max_rank_ratio: float
    min_rank_ratio: float
    energy_multiplier: float
    scorer_hidden: int
    num_gate_blocks: int


# REFERENCES.md §G (the LoRAven/ADLRNS seed's modes).
MODE_PRESETS: dict[str, ModePreset] = {
    "high_performance": ModePreset(0.8, 0.3, 1.5, 64, 16),
    "balanced": ModePreset(0.5, 0.2, 1.0, 32, 8),
    "low_power": ModePreset(0.3, 0.1, 0.7, 16, 4),
}


def preset_ranks(in_features: int, out_features: int, mode: str) -> tuple[int, int]:
    """``max_rank = max(4, ⌊min·ratio⌋)``, ``min_rank = max(2, ⌊min·min_ratio⌋)``, clipped to ``min(in, out)``."""
    p, full = MODE_PRESETS[mode], min(in_features, out_features)
    r_max = min(full, max(4, math.floor(full * p.max_rank_ratio)))
    return r_max, min(r_max, max(2, math.floor(full * p.min_rank_ratio)))


class LoRAven(nn.Module):
    """Adaptive low-rank linear layer with the seed's modes; ``forward(x) -> y``.

    .. math:: y_i = U\\,\\mathrm{diag}(s \\odot g_i)\\,V^T x_i + b, \\quad
              E(r_i) \\le \\text{energy\\_budget}

    Modes (REFERENCES.md §G): ``high_performance``, ``balanced`` (default), ``low_power`` and
    ``custom`` (``max_rank``/``min_rank`` given; they also override a preset's ranks). The
    default ``energy_budget`` (mJ per sample) is the mode's energy multiplier times the energy
    of ``max_rank`` as priced by the layer's estimator, so ``low_power`` (0.7×) caps ranks
    below ``max_rank`` while the other modes do not bind. NaN/Inf inputs warn once and are
    treated as 0.

    Args:
        in_features, out_features: sizes. mode: preset name.
        max_rank, min_rank: rank range (required for ``custom`` unless defaults suit).
        energy_budget: mJ per sample (>= 0) or None for the mode default.
        bias: learn a bias. device: where to place the parameters.
        **kw: passed to :class:`DynamicLowRankLayer` (``scheduler``, ``estimator``, ``scorer``).

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
        preset = MODE_PRESETS["balanced" if mode == "custom" else mode]
        r_max, r_min = preset_ranks(
            in_features, out_features, "balanced" if mode == "custom" else mode
        )
        r_max = max_rank if max_rank is not None else r_max
        r_min = (
            min_rank
            if min_rank is not None
            else min(r_min, r_max)
            if isinstance(r_max, int)
            else r_min
        )
        if energy_budget is not None and (
            not isinstance(energy_budget, (int, float))
            or not energy_budget >= 0
            or math.isinf(energy_budget)
        ):
            raise ValueError(
                f"energy_budget={energy_budget!r} must be a finite energy >= 0 in mJ per sample"
            )
        blocks = (
            min(preset.num_gate_blocks, r_max)
            if isinstance(r_max, int) and r_max > 0
            else preset.num_gate_blocks
        )
        kw.setdefault("scorer_hidden", preset.scorer_hidden)
        self.layer = DynamicLowRankLayer(in_features, out_features, r_max, r_min, num_gate_blocks=blocks,
                                         bias=bias, device=device, **kw)  # fmt: skip
        self.in_features, self.out_features = in_features, out_features
        self.mode = self._current_mode = mode
        self.preset = preset
        if energy_budget is None:
            e_max = energy_of(self.layer.estimator.estimate((in_features, out_features), r_max))
            energy_budget = preset.energy_multiplier * e_max
        self.energy_budget = float(energy_budget)
        self._stats: dict[str, float] = {"current_rank": float(r_max), "energy_consumption": 0.0,
                                         "budget_usage": 0.0, "latency_ms": 0.0, "batch_size": 0}  # fmt: skip

    @property
    def max_rank(self) -> int:
        return self.layer.r_max

    @property
    def min_rank(self) -> int:
        return self.layer.r_min

    def forward(self, x: Tensor) -> Tensor:
        x = sanitize_input(x, self)
        y, ranks = self.layer(x, budget=self.energy_budget)
        with torch.no_grad():
            e = self.layer.last_energy_mJ
            mean_rank = float(ranks.float().mean())
            est = self.layer.estimator.estimate((self.in_features, self.out_features), round(mean_rank),
                                                batch_size=len(ranks))  # fmt: skip
            latency = float(est.get("latency_s", 0.0)) * 1e3 if isinstance(est, dict) else 0.0
            energy = float(e.mean())
            self._stats = {
                "current_rank": mean_rank,
                "energy_consumption": energy,
                "budget_usage": energy / self.energy_budget if self.energy_budget > 0 else math.inf,
                "latency_ms": latency,
                "batch_size": len(ranks),
            }
        return y

    def get_current_rank(self) -> float:
        """Mean active rank over the last batch (ranks are per sample)."""
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

    def get_performance_stats(self) -> dict[str, float]:
        """``current_rank``, ``energy_consumption`` (mJ/sample), ``budget_usage``,
        ``compression_ratio``, ``latency_ms`` (estimator roofline), ``energy_budget``, ``mode``."""
        return {**self._stats, "compression_ratio": self.get_compression_ratio(),
                "energy_budget": self.energy_budget, "mode": self.mode}  # fmt: skip

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, energy_budget={self.energy_budget:.3g} mJ"
