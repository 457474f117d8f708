"""The ADLRNS YAML schema (model / train / scheduler / hardware) as validated dataclasses."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

__all__ = [
    "DataConfig",
    "ExperimentConfig",
    "HardwareConfig",
    "ModelConfig",
    "SchedulerConfig",
    "TrainConfig",
]


def _num(
    section: str, key: str, value: Any, kind: type = float, *, lo: float | None = None,
    positive: bool = False, example: Any = None,
) -> Any:  # fmt: skip
    """A finite number for ``section.key``: ints must be whole, ``lo`` / ``positive`` bound it.

    YAML 1.1 reads ``1e-4`` as a string, so numeric strings are accepted; booleans, NaN, inf
    and non-numbers are refused with the field, the value and an example of a good one.
    """
    eg = f"; write e.g. {key}: {example}" if example is not None else ""
    if isinstance(value, bool):
        raise ValueError(f"{section}.{key}={value!r} is a boolean, not a number{eg}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{section}.{key}={value!r} is not a number{eg}") from None
    if not math.isfinite(x):
        raise ValueError(f"{section}.{key}={value!r} is not finite{eg}")
    if kind is int:
        if x != int(x):
            raise ValueError(f"{section}.{key}={value!r} must be a whole number{eg}")
        out: Any = int(x)
    else:
        out = x
    if positive and not out > 0:
        raise ValueError(f"{section}.{key}={value!r} must be > 0{eg}")
    if lo is not None and out < lo:
        raise ValueError(f"{section}.{key}={value!r} must be >= {lo:g}{eg}")
    return out


def _flag(section: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{section}.{key}={value!r} must be true or false")
    return value


def _build(cls, section: str, data: Any):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TypeError(f"config section {section!r} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    if extra and "extra" not in names:
        raise ValueError(f"unknown keys in {section}: {sorted(extra)}; known: {sorted(names)}")
    if extra:  # handed to the constructor so __post_init__ checks them too
        given = known.get("extra") or {}
        if not isinstance(given, dict):
            raise TypeError(f"{section}.extra must be a mapping, got {type(given).__name__}")
        known["extra"] = {**given, **extra}
    return cls(**known)


@dataclass
class ModelConfig:
    """``model:`` section. ``type`` picks a builder in ``braingate.experiments``."""

    type: str = "dynamic_mlp"
    r_min: int = 4
    r_max: int = 64
    scorer_hidden: int = 32
    num_gate_blocks: int = 8
    hidden: int = 128
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or not self.type:
            raise ValueError(f"model.type={self.type!r} must be a builder name, e.g. dynamic_mlp")
        for key in ("r_min", "r_max", "scorer_hidden", "num_gate_blocks", "hidden"):
            default = getattr(ModelConfig, key)
            setattr(self, key, _num("model", key, getattr(self, key), int, lo=1, example=default))
        if self.r_min > self.r_max:
            raise ValueError(
                f"model.r_min={self.r_min} > model.r_max={self.r_max}; pass r_min <= r_max"
            )


@dataclass
class TrainConfig:
    """``train:`` section."""

    batch_size: int = 64
    epochs: int = 10
    lr: float = 1e-3
    energy_penalty_weight: float = 0.01
    activity_penalty_weight: float = 0.0
    penalty_alpha: float = 1.0
    penalty_beta: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    seed: int = 0
    progress: bool = True
    # rank floors calibrated after every training epoch (Trainer.calibrate_rank_floors): the
    # accuracy in points a model may lose to its dynamic layers' floors, on up to
    # calibration_samples training samples; calibrate_ranks: false leaves floors alone
    calibrate_ranks: bool = True
    rank_tolerance: float = 0.5
    calibration_samples: int = 1024
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.batch_size = _num("train", "batch_size", self.batch_size, int, lo=1, example=64)
        self.calibrate_ranks = _flag("train", "calibrate_ranks", self.calibrate_ranks)
        self.rank_tolerance = _num("train", "rank_tolerance", self.rank_tolerance, lo=0,
                                   example=0.5)  # fmt: skip
        self.calibration_samples = _num("train", "calibration_samples", self.calibration_samples,
                                        int, lo=1, example=1024)  # fmt: skip
        self.epochs = _num("train", "epochs", self.epochs, int, lo=0, example=10)
        self.seed = _num("train", "seed", self.seed, int, lo=0, example=0)
        if self.seed >= 2**32:  # numpy's legacy seed range, which the experiments runner uses
            raise ValueError(f"train.seed={self.seed} must be < 2**32; write e.g. seed: 0")
        self.lr = _num("train", "lr", self.lr, positive=True, example=0.001)
        for key in ("energy_penalty_weight", "activity_penalty_weight", "penalty_alpha",
                    "penalty_beta", "weight_decay", "grad_clip"):  # fmt: skip
            value = _num("train", key, getattr(self, key), lo=0, example=getattr(TrainConfig, key))
            setattr(self, key, value)
        self.progress = _flag("train", "progress", self.progress)


@dataclass
class SchedulerConfig:
    """``scheduler:`` section: a registered scheduler and the per-sample energy budget (mJ)."""

    type: str = "energy_aware"
    energy_budget_mJ_per_sample: float | None = None
    alpha: float = 1.0
    beta: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from braingate.scheduling import scheduler_names

        if not isinstance(self.type, str) or self.type not in scheduler_names():
            raise ValueError(
                f"unknown scheduler.type {self.type!r}; known: {', '.join(scheduler_names())}"
            )
        if self.energy_budget_mJ_per_sample is not None:
            self.energy_budget_mJ_per_sample = _num(
                "scheduler", "energy_budget_mJ_per_sample", self.energy_budget_mJ_per_sample,
                lo=0, example=0.5,
            )  # fmt: skip
        self.alpha = _num("scheduler", "alpha", self.alpha, lo=0, example=1.0)
        self.beta = _num("scheduler", "beta", self.beta, lo=0, example=0.1)


# hardware keys handed to PerfEstimator: those that must be > 0, and those that may be 0
_HW_POSITIVE = ("memory_bandwidth", "peak_flops", "gpu_cores", "clock_hz", "bytes_per_param")
_HW_NONNEG = ("energy_per_flop", "energy_per_byte")


@dataclass
class HardwareConfig:
    """``hardware:`` section, handed to ``PerfEstimator`` (``energy_per_flop`` in mJ)."""

    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.profile()  # check the numbers now, not when the first layer is configured

    def profile(self) -> dict[str, Any]:
        """The section as a ``PerfEstimator`` profile, numbers checked (finite, in range)."""
        out = dict(self.extra)
        for key in _HW_NONNEG + _HW_POSITIVE:
            if key in out:
                positive = key in _HW_POSITIVE
                eg = "1e12" if positive else "1e-9"
                out[key] = _num("hardware", key, out[key], lo=0, positive=positive, example=eg)
        return out


@dataclass
class DataConfig:
    """``data:`` section (for the experiments runner): ``name`` in digits / basicmotions / gunpoint."""

    name: str = "digits"
    val_fraction: float = 0.25
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"data.name={self.name!r} must be a dataset name, e.g. digits")
        v = _num("data", "val_fraction", self.val_fraction, positive=True, example=0.25)
        if not v < 1:
            raise ValueError(f"data.val_fraction={v} must be in (0, 1); write e.g. 0.25")
        self.val_fraction = v


@dataclass
class ExperimentConfig:
    """A whole YAML file."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    data: DataConfig = field(default_factory=DataConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ExperimentConfig:
        d = dict(d or {})
        sections = {"model": ModelConfig, "train": TrainConfig, "scheduler": SchedulerConfig,
                    "hardware": HardwareConfig, "data": DataConfig}  # fmt: skip
        unknown = set(d) - set(sections)
        if unknown:
            raise ValueError(
                f"unknown config sections {sorted(unknown)}; known: {sorted(sections)}"
            )
        return cls(**{k: _build(c, k, d.get(k)) for k, c in sections.items()})

    @classmethod
    def load(cls, path: str) -> ExperimentConfig:
        import yaml

        with open(path, encoding="utf-8") as f:
            return cls.from_dict(yaml.safe_load(f))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
