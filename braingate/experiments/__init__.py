"""Experiment runner: ``python -m braingate.experiments run CONFIG.yaml``."""

from braingate.experiments.runner import DynamicMLP, load_data, main, run

__all__ = ["DynamicMLP", "load_data", "main", "run"]
