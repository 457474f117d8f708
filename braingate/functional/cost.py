"""Predicted wall-clock cost of one event step and one dense step (auto mode's decision rule)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["DEFAULT_COST_MODEL", "CostModel", "current_cost_model", "set_cost_model"]


@dataclass(frozen=True)
class CostModel:
    r"""Linear time models of the two paths of a gated low-rank layer, in seconds.

    .. math::
        t_{event} = a_0 + a_1·Bn + a_2·\mathrm{synops},\qquad
        t_{dense} = d_0 + d_1·B(n+m)R_{act} + d_2·(n+m)R_{act}

    Fitted by :func:`braingate.calibrate` on the current device; auto mode takes the event path
    when its prediction (from the previous step's synops) is below the dense one. One
    coefficient serves both halves of the step: each is a loop over contiguous factor rows.
    The dense model's last term is the factors' memory traffic, paid once per step whatever the
    batch: at batch 1 a GEMM is a memory-bound GEMV, at batch 16 the same bytes serve 16 rows, so
    a model with a per-op term alone, fitted on both, misjudges one of them.
    """

    event_fixed: float
    event_per_scan: float
    event_per_synop: float
    dense_fixed: float
    dense_per_op: float
    dense_per_weight: float = 0.0
    device: str = "uncalibrated"

    def event_time(self, batch: int, n: int, synops: float) -> float:
        """Predicted seconds of one event step doing ``synops = Σ(|E|·R_act + |L|·m)``."""
        return self.event_fixed + self.event_per_scan * batch * n + self.event_per_synop * synops

    def dense_time(self, batch: int, n: int, m: int, active_rank: int) -> float:
        """Predicted seconds of one dense low-rank step."""
        ops = (n + m) * active_rank
        return self.dense_fixed + (self.dense_per_op * batch + self.dense_per_weight) * ops

    def to_dict(self) -> dict:
        return asdict(self)


#: Used until :func:`braingate.calibrate` runs. Assumption (not a measurement of this device):
#: a sparse scalar op costs ~4× a BLAS op per element, and both paths share one fixed overhead.
DEFAULT_COST_MODEL = CostModel(5e-6, 1e-9, 4e-10, 5e-6, 1e-10)

_CURRENT: dict[str, CostModel] = {}


def current_cost_model(device_type: str) -> CostModel:
    """The calibrated model for a device type (``"cpu"``, ``"cuda"``), else the default."""
    return _CURRENT.get(device_type, DEFAULT_COST_MODEL)


def set_cost_model(device_type: str, model: CostModel) -> None:
    """Install ``model`` as the one auto mode uses on ``device_type``."""
    _CURRENT[device_type] = model
