"""BioConfig and the choices it holds: learning-rate distributions and Dale's-principle modes.

Defaults follow the Bio Transformations package (REFERENCES.md §H): ν = 0.16, dampening 0.6,
crystal_thresh 4.5e-5, dre 8.0, Γ = 0, base_lr 0.1, stability 2.0, lr_variability 0.2,
lr range [0.5, 2.0], decay 0.9995, update frequency 100.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch


class Distribution(enum.Enum):
    """How the per-weight learning-rate multipliers P are drawn (see ``distributions.py``)."""

    BASELINE = "baseline"
    UNIFORM = "uniform"
    NORMAL = "normal"
    LOGNORMAL = "lognormal"
    GAMMA = "gamma"
    BETA = "beta"
    LAYER_ADAPTIVE = "layer_adaptive"
    WEIGHT_ADAPTIVE = "weight_adaptive"
    TEMPORAL = "temporal"
    ACTIVITY = "activity"


class DaleMode(enum.Enum):
    """Which unit owns the fixed sign under Dale's principle.

    ``PRESYNAPTIC``: every outgoing weight of an input unit (a column of ``W``, an input channel
    of a conv) has one sign: the biological rule. ``OUTPUT_ROW``: every weight into one output
    unit (a row of ``W``) has one sign: what the original package enforced.
    """

    PRESYNAPTIC = "presynaptic"
    OUTPUT_ROW = "output_row"


def identity(x: torch.Tensor) -> torch.Tensor:
    """The default weight-splitting activation: returns its input."""
    return x


def _coerce_enum(name: str, value: object, kind: type[enum.Enum]) -> enum.Enum:
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        for member in kind:
            if value.lower() in (member.value, member.name.lower()):
                return member
    known = ", ".join(m.name for m in kind)
    raise ValueError(f"{name}={value!r} is not a {kind.__name__}; pass one of {known}")


def _number(name: str, value: object, lo: float, hi: float, *, open_lo: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    bad = not math.isfinite(value) or value > hi or (value <= lo if open_lo else value < lo)
    if bad:
        left = "(" if open_lo else "["
        raise ValueError(f"{name}={value} is outside {left}{lo}, {hi}]; pass a value in that range")


@dataclasses.dataclass(frozen=True)
class BioConfig:
    """All parameters of the bio-inspired plasticity methods, validated on construction.

    Args:
        fuzzy_learning_rate_factor_nu: spread ν of the learning-rate multipliers P.
        fuzzy_lr_distribution: how P is drawn (a :class:`Distribution` or its name).
        fuzzy_lr_dynamic: let TEMPORAL / ACTIVITY multipliers evolve during training.
        fuzzy_lr_min, fuzzy_lr_max: P is clamped to ``[fuzzy_lr_min, fuzzy_lr_max]``.
        fuzzy_lr_update_freq: TEMPORAL multipliers evolve every this many steps.
        fuzzy_lr_decay: TEMPORAL decay d of ``P − 1`` per evolution step, in (0, 1].
        dampening_factor: crystallize multiplies P by this, in (0, 1].
        crystal_thresh: crystallize where ``|G| < crystal_thresh·|W|``.
        rejuvenation_parameter_dre: rejuvenation probability ``exp(−dre·|W|/std(W))``.
        weight_splitting_Gamma: Γ sub-synapses per connection; 0 or 1 disables splitting.
        weight_splitting_activation_function: applied to outputs before the group sum.
        base_lr, stability_factor, lr_variability: volume-dependent factor
            ``|N(μ, lr_variability·μ)|`` with ``μ = base_lr·exp(−stability_factor·|W|/(|W|+1))``.
        apply_dales_principle: fix one sign per unit at conversion and allow enforcing it.
        dales_principle_mode: ``DaleMode.PRESYNAPTIC`` (default) or ``DaleMode.OUTPUT_ROW``.

    >>> BioConfig(fuzzy_lr_distribution="normal").fuzzy_lr_distribution
    <Distribution.NORMAL: 'normal'>
    """

    fuzzy_learning_rate_factor_nu: float = 0.16
    fuzzy_lr_distribution: Distribution = Distribution.UNIFORM
    fuzzy_lr_dynamic: bool = False
    fuzzy_lr_min: float = 0.5
    fuzzy_lr_max: float = 2.0
    fuzzy_lr_update_freq: int = 100
    fuzzy_lr_decay: float = 0.9995
    dampening_factor: float = 0.6
    crystal_thresh: float = 4.5e-05
    rejuvenation_parameter_dre: float = 8.0
    weight_splitting_Gamma: int = 0  # capital Γ: the seed's parameter name
    weight_splitting_activation_function: Callable[[torch.Tensor], torch.Tensor] = identity
    base_lr: float = 0.1
    stability_factor: float = 2.0
    lr_variability: float = 0.2
    apply_dales_principle: bool = False
    dales_principle_mode: DaleMode = DaleMode.PRESYNAPTIC

    def __post_init__(self) -> None:
        inf = math.inf
        set_ = object.__setattr__
        set_(
            self,
            "fuzzy_lr_distribution",
            _coerce_enum("fuzzy_lr_distribution", self.fuzzy_lr_distribution, Distribution),
        )
        set_(
            self,
            "dales_principle_mode",
            _coerce_enum("dales_principle_mode", self.dales_principle_mode, DaleMode),
        )
        _number("fuzzy_learning_rate_factor_nu", self.fuzzy_learning_rate_factor_nu, 0.0, inf)
        _number("fuzzy_lr_min", self.fuzzy_lr_min, 0.0, inf)
        _number("fuzzy_lr_max", self.fuzzy_lr_max, 0.0, inf)
        if self.fuzzy_lr_min > self.fuzzy_lr_max:
            raise ValueError(
                f"fuzzy_lr_min={self.fuzzy_lr_min} > fuzzy_lr_max={self.fuzzy_lr_max}; "
                "pass fuzzy_lr_min <= fuzzy_lr_max"
            )
        for name in ("fuzzy_lr_update_freq", "weight_splitting_Gamma"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
        if self.fuzzy_lr_update_freq < 1:
            raise ValueError(
                f"fuzzy_lr_update_freq={self.fuzzy_lr_update_freq} must be >= 1; pass e.g. 100"
            )
        if self.weight_splitting_Gamma < 0:
            raise ValueError(
                f"weight_splitting_Gamma={self.weight_splitting_Gamma} must be >= 0; "
                "pass 0 to disable splitting or Γ >= 2 sub-synapses"
            )
        _number("fuzzy_lr_decay", self.fuzzy_lr_decay, 0.0, 1.0, open_lo=True)
        _number("dampening_factor", self.dampening_factor, 0.0, 1.0, open_lo=True)
        _number("crystal_thresh", self.crystal_thresh, 0.0, inf)
        _number("rejuvenation_parameter_dre", self.rejuvenation_parameter_dre, 0.0, inf)
        _number("base_lr", self.base_lr, 0.0, inf, open_lo=True)
        _number("stability_factor", self.stability_factor, 0.0, inf)
        _number("lr_variability", self.lr_variability, 0.0, inf)
        if not callable(self.weight_splitting_activation_function):
            raise TypeError(
                "weight_splitting_activation_function must be callable, got "
                f"{self.weight_splitting_activation_function!r}; pass e.g. nn.ReLU()"
            )
        for name in ("fuzzy_lr_dynamic", "apply_dales_principle"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of all configuration fields."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: BioConfig | None = None) -> BioConfig:
        """Build a config from a mapping, on top of ``base`` (defaults when None).

        Raises:
            ValueError: a key is not a field; the message lists the known fields.
        """
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"unknown BioConfig parameter(s) {unknown}; known: {', '.join(cls.field_names())}"
            )
        return dataclasses.replace(base if base is not None else cls(), **dict(values))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (enums and the activation kept as objects)."""
        return {name: getattr(self, name) for name in self.field_names()}


DEFAULT_BIO_CONFIG = BioConfig()
