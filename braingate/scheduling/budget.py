"""``BudgetManager``: per-layer energy budgets that track a per-sample target in closed loop."""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Sequence
from typing import Any

from braingate.energy.estimator import PerfEstimator, check_layer_dims

__all__ = ["BudgetManager", "describe_range"]


def _priced_by(estimator: Any) -> str:
    model = getattr(estimator, "energy_model", None)
    name = getattr(model, "name", None)
    return f"{type(estimator).__name__}" + (f" ({name})" if name else "")


def describe_range(
    energy: Sequence[float], ranks: Sequence[int], estimator: Any, batch: int
) -> str:
    """One line naming a layer's real energy range: ``energy`` (mJ per sample) at ``ranks``."""
    e = [float(v) for v in energy]
    by = "" if estimator is None else f", priced by {_priced_by(estimator)}"
    return (
        f"this layer costs {e[0]:.3g} mJ per sample at rank {ranks[0]} to {e[-1]:.3g} mJ at "
        f"rank {ranks[-1]} (batch {batch}{by})"
    )


class BudgetManager:
    """Splits a per-sample energy budget across layers and corrects for what was spent.

    Layer ``l`` with full-rank cost :math:`E_l` and priority :math:`p_l` gets the share
    :math:`w_l = p_l E_l / \\sum_k p_k E_k` of the usable budget
    :math:`B_u = B (1 - \\text{margin})`. Per call,

    .. math::
        b_l = B_u\\, w_l\\, g_l\\, (1 + c - \\bar c_l) + C_l / W

    where :math:`c` is the batch's mean complexity, :math:`\\bar c_l` its mean over the
    window, :math:`C_l = \\sum n\\,(B_u w_l - \\text{spent})` the running credit
    (integral feedback spread over ``W = window_size`` samples) and :math:`g_l` a slow scale
    adapted at ``adaptation_rate`` toward the windowed usage error.

    Args:
        total_budget: target energy per sample (mJ), summed over the layers.
        window_size: samples in the usage window (also the integral horizon).
        safety_margin: fraction of the budget held back, in [0, 1).
        adaptation_rate: rate of the slow scale adaptation, >= 0.
        estimator: prices ``layer_dims`` (default ``PerfEstimator()``).
    """

    NEVER_BINDS = 100.0

    def __init__(
        self,
        total_budget: float = 1000.0,
        window_size: int = 100,
        safety_margin: float = 0.1,
        adaptation_rate: float = 0.01,
        estimator: PerfEstimator | None = None,
    ) -> None:
        if not isinstance(total_budget, (int, float)) or not total_budget > 0:
            raise ValueError(
                f"total_budget={total_budget!r} must be a positive energy in mJ per sample"
            )
        if not isinstance(window_size, int) or window_size < 1:
            raise ValueError(f"window_size={window_size!r} must be a positive int")
        if not isinstance(safety_margin, (int, float)) or not 0.0 <= safety_margin < 1.0:
            raise ValueError(f"safety_margin={safety_margin!r} must be in [0, 1)")
        if not isinstance(adaptation_rate, (int, float)) or adaptation_rate < 0:
            raise ValueError(f"adaptation_rate={adaptation_rate!r} must be >= 0")
        self.total_budget = float(total_budget)
        self.window_size = window_size
        self.safety_margin = float(safety_margin)
        self.adaptation_rate = float(adaptation_rate)
        self.estimator = estimator if estimator is not None else PerfEstimator()
        self.reset()

    def reset(self) -> None:
        """Forget layers, usage and credit."""
        self._layers: dict[str, dict[str, Any]] = {}
        self.history: deque[tuple[str, float, int]] = deque()
        self._warned = False

    def _check_scale(self, layer_id: str, dims: tuple[int, int]) -> None:
        """Warn once when the budget is far beyond anything the layers could spend.

        "Far" is more than ``NEVER_BINDS`` times the dense cost of every layer seen so far, so
        that a network whose other layers are not yet allocated does not trigger it.
        """
        dense = sum(v["cost"] for v in self._layers.values())
        if self._warned or self.usable_budget <= self.NEVER_BINDS * dense:
            return
        self._warned = True
        warnings.warn(
            f"BudgetManager total_budget={self.total_budget:.3g} mJ per sample can never bind: "
            f"layer {layer_id!r} {dims[0]}x{dims[1]} costs at most "
            f"{self._layers[layer_id]['cost']:.3g} mJ per sample even as a dense nn.Linear, and "
            f"the {len(self._layers)} layer(s) seen so far {dense:.3g} mJ together, over "
            f"{self.NEVER_BINDS:g}x less (priced by "
            f"{_priced_by(self.estimator)}); give total_budget in that range (warned once)",
            RuntimeWarning,
            stacklevel=3,
        )

    @property
    def usable_budget(self) -> float:
        """Budget after the safety margin, mJ per sample."""
        return self.total_budget * (1.0 - self.safety_margin)

    def _layer(self, layer_id: str) -> dict[str, Any]:
        if layer_id not in self._layers:
            self._layers[layer_id] = {
                "cost": 1.0,
                "priority": 1.0,
                "scale": 1.0,
                "credit": 0.0,
                "last_base": None,
                "complexity": deque(maxlen=self.window_size),
                "usage": deque(),
                "last_n": 1,
            }
        return self._layers[layer_id]

    def target_budget(self, layer_id: str) -> float:
        """The layer's share of the usable budget (mJ per sample): what its mean should be."""
        lay = self._layer(str(layer_id))
        total = sum(v["priority"] * v["cost"] for v in self._layers.values())
        return self.usable_budget * lay["priority"] * lay["cost"] / total

    def allocate_budget(
        self,
        layer_id: str,
        complexity_score: float = 0.5,
        layer_dims: Sequence[int] | None = None,
        performance_priority: float = 1.0,
    ) -> float:
        """Budget (mJ per sample) for ``layer_id``'s next batch; see the class formula."""
        if not isinstance(performance_priority, (int, float)) or not performance_priority > 0:
            raise ValueError(f"performance_priority={performance_priority!r} must be > 0")
        c = float(complexity_score)
        if not 0.0 <= c <= 1.0:
            raise ValueError(f"complexity_score={complexity_score!r} must be in [0, 1]")
        lay = self._layer(str(layer_id))
        if layer_dims is not None:
            dims = check_layer_dims(layer_dims)
            lay["cost"] = self.estimator.estimate_dense(dims)["energy_mJ_per_sample"]
            lay["priced"] = True
            if all(v.get("priced") for v in self._layers.values()):
                self._check_scale(str(layer_id), dims)
        lay["priority"] = float(performance_priority)
        lay["complexity"].append(c)
        c_bar = sum(lay["complexity"]) / len(lay["complexity"])
        base = self.target_budget(str(layer_id))
        lay["last_base"] = base
        horizon = max(self.window_size, lay["last_n"])
        return max(0.0, base * lay["scale"] * max(0.1, 1.0 + c - c_bar) + lay["credit"] / horizon)

    def record_usage(self, layer_id: str, energy_mJ: float, n_samples: int = 1) -> None:
        """Record that ``n_samples`` samples spent ``energy_mJ`` each (mean) in ``layer_id``."""
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples={n_samples!r} must be a positive int")
        if not float(energy_mJ) >= 0:
            raise ValueError(f"energy_mJ={energy_mJ!r} must be >= 0")
        lay = self._layer(str(layer_id))
        base = (
            lay["last_base"] if lay["last_base"] is not None else self.target_budget(str(layer_id))
        )
        lay["credit"] += n_samples * (base - float(energy_mJ))
        lay["last_n"] = n_samples
        lay["usage"].append((float(energy_mJ), n_samples))
        while sum(n for _, n in lay["usage"]) - lay["usage"][0][1] >= self.window_size:
            lay["usage"].popleft()
        used = self.layer_usage(str(layer_id))
        lay["scale"] *= 1.0 + self.adaptation_rate * (base - used) / max(base, 1e-30)
        lay["scale"] = min(max(lay["scale"], 0.1), 10.0)
        self.history.append((str(layer_id), float(energy_mJ), n_samples))
        if len(self.history) > 10 * self.window_size:
            self.history.popleft()

    def layer_usage(self, layer_id: str) -> float:
        """Mean energy per sample (mJ) of ``layer_id`` over the window (0 before any use)."""
        usage = self._layers.get(str(layer_id), {}).get("usage", ())
        n = sum(k for _, k in usage)
        return sum(e * k for e, k in usage) / n if n else 0.0

    def get_usage(self) -> float:
        """Windowed energy per sample summed over layers, as a fraction of ``total_budget``."""
        return sum(self.layer_usage(k) for k in self._layers) / self.total_budget

    get_budget_usage = get_usage
