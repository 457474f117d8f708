"""Experiment runner: ``python -m braingate.experiments [run] --config NAME_OR_YAML ...``."""

from braingate.experiments.runner import (
    MLP,
    MODELS,
    DynamicMLP,
    bundled_configs,
    load_config,
    load_data,
    load_image_folder,
    main,
    run,
)

__all__ = [
    "MLP",
    "MODELS",
    "DynamicMLP",
    "bundled_configs",
    "load_config",
    "load_data",
    "load_image_folder",
    "main",
    "run",
]
