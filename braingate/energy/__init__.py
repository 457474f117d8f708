"""Energy models (cited per-op costs), the analytic ``PerfEstimator`` and Report energy."""

from braingate.energy.costs import (
    EnergyModel,
    energy_model,
    energy_model_names,
    register_energy_model,
)
from braingate.energy.estimator import DEFAULT_HARDWARE_PROFILE, PerfEstimator, check_layer_dims
from braingate.energy.report import report_energy

__all__ = [
    "DEFAULT_HARDWARE_PROFILE",
    "EnergyModel",
    "PerfEstimator",
    "check_layer_dims",
    "energy_model",
    "energy_model_names",
    "register_energy_model",
    "report_energy",
]
