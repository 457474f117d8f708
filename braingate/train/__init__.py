"""Training: the ADLRNS objective (task loss + energy penalty), Trainer, config schema, plots."""

from braingate.train.config import (
    DataConfig,
    ExperimentConfig,
    HardwareConfig,
    ModelConfig,
    SchedulerConfig,
    TrainConfig,
)
from braingate.train.end_to_end import EventRecipe, evaluate_events, train_events
from braingate.train.events_in_loop import EventTape, events_in_loop, rollout
from braingate.train.plots import plot_history
from braingate.train.regularizers import (
    activity_penalty,
    energy_penalty,
    event_rate,
    model_energy_penalty,
)
from braingate.train.trainer import ADLRNSTrainer, Trainer

__all__ = [
    "ADLRNSTrainer",
    "DataConfig",
    "EventRecipe",
    "EventTape",
    "ExperimentConfig",
    "HardwareConfig",
    "ModelConfig",
    "SchedulerConfig",
    "TrainConfig",
    "Trainer",
    "activity_penalty",
    "energy_penalty",
    "evaluate_events",
    "event_rate",
    "events_in_loop",
    "model_energy_penalty",
    "plot_history",
    "rollout",
    "train_events",
]
