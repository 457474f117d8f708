"""The ADLRNS YAML schema (model / train / scheduler / hardware) as validated dataclasses."""

from __future__ import annotations

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


def _num(section: str, key: str, value: Any, kind: type = float) -> Any:
    """YAML 1.1 reads ``1e-4`` as a string: accept numeric strings, reject the rest."""
    try:
        out = kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{section}.{key}={value!r} is not a number; write e.g. {key}: 0.001"
        ) from None
    return out


def _build(cls, section: str, data: Any):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TypeError(f"config section {section!r} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    obj = cls(**known)
    if "extra" in names:
        obj.extra.update(extra)
    elif extra:
        raise ValueError(f"unknown keys in {section}: {sorted(extra)}; known: {sorted(names)}")
    return obj


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
        for key in ("r_min", "r_max", "scorer_hidden", "num_gate_blocks", "hidden"):
            setattr(self, key, _num("model", key, getattr(self, key), int))
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key}={getattr(self, key)} must be >= 1")
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
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("batch_size", "epochs", "seed"):
            setattr(self, key, _num("train", key, getattr(self, key), int))
        for key in ("lr", "energy_penalty_weight", "activity_penalty_weight", "penalty_alpha",
                    "penalty_beta", "weight_decay", "grad_clip"):  # fmt: skip
            setattr(self, key, _num("train", key, getattr(self, key)))
            if getattr(self, key) < 0:
                raise ValueError(f"train.{key}={getattr(self, key)} must be >= 0")
        if self.lr == 0 or self.batch_size < 1 or self.epochs < 0:
            raise ValueError("train.lr must be > 0, train.batch_size >= 1 and train.epochs >= 0")


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

        if self.type not in scheduler_names():
            raise ValueError(
                f"unknown scheduler.type {self.type!r}; known: {', '.join(scheduler_names())}"
            )
        if self.energy_budget_mJ_per_sample is not None:
            b = _num("scheduler", "energy_budget_mJ_per_sample", self.energy_budget_mJ_per_sample)
            if b < 0:
                raise ValueError(f"scheduler.energy_budget_mJ_per_sample={b} must be >= 0")
            self.energy_budget_mJ_per_sample = b
        self.alpha = _num("scheduler", "alpha", self.alpha)
        self.beta = _num("scheduler", "beta", self.beta)


@dataclass
class HardwareConfig:
    """``hardware:`` section, handed to ``PerfEstimator`` (``energy_per_flop`` in mJ)."""

    extra: dict[str, Any] = field(default_factory=dict)

    def profile(self) -> dict[str, Any]:
        out = dict(self.extra)
        for key in (
            "energy_per_flop",
            "energy_per_byte",
            "memory_bandwidth",
            "peak_flops",
            "gpu_cores",
        ):
            if key in out:
                out[key] = _num("hardware", key, out[key])
        return out


@dataclass
class DataConfig:
    """``data:`` section (for the experiments runner): ``name`` in digits / basicmotions / gunpoint."""

    name: str = "digits"
    val_fraction: float = 0.25
    extra: dict[str, Any] = field(default_factory=dict)


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
