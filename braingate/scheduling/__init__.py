"""Rank scheduling: complexity scorers, the ``RankScheduler`` registry and ``BudgetManager``."""

from braingate.scheduling.base import RankScheduler, register_scheduler, scheduler_names
from braingate.scheduling.budget import BudgetManager
from braingate.scheduling.schedulers import (
    BudgetRankScheduler,
    ComplexityRankScheduler,
    EnergyAwareRankScheduler,
    FixedRankScheduler,
)
from braingate.scheduling.scorers import (
    InputChangeScorer,
    LatentScorer,
    MagnitudeScorer,
    MLPComplexityScorer,
    make_scorer,
    scorer_names,
)

__all__ = [
    "BudgetManager",
    "BudgetRankScheduler",
    "ComplexityRankScheduler",
    "EnergyAwareRankScheduler",
    "FixedRankScheduler",
    "InputChangeScorer",
    "LatentScorer",
    "MLPComplexityScorer",
    "MagnitudeScorer",
    "RankScheduler",
    "make_scorer",
    "register_scheduler",
    "scheduler_names",
    "scorer_names",
]
