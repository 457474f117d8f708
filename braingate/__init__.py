"""braingate: event-driven, gated low-rank neural networks for PyTorch.

A layer's weight is factored ``W ≈ U·diag(s)·Vᵀ``; its rank is split into gate blocks, and in
event mode it recomputes only the input coordinates and rank units whose change crossed a
threshold (residual carried, error bounded). :func:`simulate` runs a network over a stream and
counts every operation it did and skipped.
"""

from importlib.metadata import PackageNotFoundError, version

from braingate import conv_dense, convert_conv, convert_rnn, train  # noqa: F401 - registrations
from braingate.calibration import CalibrationResult, CalibrationWarning, calibrate_thresholds
from braingate.convert import convert
from braingate.energy import EnergyModel, PerfEstimator, report_energy
from braingate.functional.cost import CostModel
from braingate.nn import (
    LIF,
    EventConv1d,
    EventConv2d,
    EventGRU,
    EventGRUCell,
    EventLinear,
    EventLSTM,
    EventLSTMCell,
    EventModule,
    EventResidual,
)
from braingate.nn.dynamic import DynamicLowRankLayer
from braingate.nn.dynamic_conv import DynamicLowRankConv2d
from braingate.nn.loraven import LoRAven
from braingate.scheduling import (
    BudgetManager,
    EnergyAwareRankScheduler,
    RankScheduler,
)
from braingate.sim import Report, calibrate, execution, reset, simulate
from braingate.state import EventState, StepCounts

_LAZY_SUBMODULES = ("bio", "integrations", "lora")


def __getattr__(name: str):
    """``bg.lora``, ``bg.bio``, ``bg.integrations``: imported on first use (lean ``import``)."""
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"braingate.{name}")
    raise AttributeError(f"module 'braingate' has no attribute {name!r}")


try:
    __version__ = version("braingate")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = [
    "LIF",
    "BudgetManager",
    "CalibrationResult",
    "CalibrationWarning",
    "CostModel",
    "DynamicLowRankConv2d",
    "DynamicLowRankLayer",
    "EnergyAwareRankScheduler",
    "EnergyModel",
    "EventConv1d",
    "EventConv2d",
    "EventGRU",
    "EventGRUCell",
    "EventLSTM",
    "EventLSTMCell",
    "EventLinear",
    "EventModule",
    "EventResidual",
    "EventState",
    "LoRAven",
    "PerfEstimator",
    "RankScheduler",
    "Report",
    "StepCounts",
    "__version__",
    "calibrate",
    "calibrate_thresholds",
    "convert",
    "execution",
    "report_energy",
    "reset",
    "simulate",
    "train",
]
