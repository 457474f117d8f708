"""Which layers carry plasticity, and which of their tensors (a registry keyed by layer type).

A :class:`Target` names one weight tensor of a layer and how its axes map to units when the
tensor is read as a layer weight ``(out, in, ...)``: ``out_dim`` indexes postsynaptic units,
``in_dim`` presynaptic ones. ``nn.Linear`` and ``nn.Conv2d`` have one target, ``weight``;
braingate's ``EventLinear`` (``W = U·diag(s)·Vᵀ``) has two: ``U`` (m, R), the rank→output
layer, and ``V`` (n, R), the input→rank layer, so its rank units are neurons of their own.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

from braingate._registry import Registry


class Target(NamedTuple):
    """One plastic tensor of a layer: attribute ``name``, unit axes ``out_dim`` / ``in_dim``."""

    name: str
    out_dim: int
    in_dim: int


class LayerSpec(NamedTuple):
    """How a layer type is treated: its targets and the channel axis of its output."""

    targets: tuple[Target, ...]
    output_dim: int


REGISTRY: Registry[LayerSpec] = Registry("bio layer type")


def register_layer(layer_type: type[nn.Module], spec: LayerSpec) -> None:
    """Make ``layer_type`` (and its subclasses) convertible by :class:`BioConverter`.

    A type registered already raises ``ValueError``.
    """
    if not (isinstance(layer_type, type) and issubclass(layer_type, nn.Module)):
        raise TypeError(f"layer_type={layer_type!r} is not an nn.Module subclass")
    if not isinstance(spec, LayerSpec) or not spec.targets:
        raise TypeError(
            f"spec={spec!r} must be a LayerSpec with at least one Target, e.g. "
            "LayerSpec((Target('weight', 0, 1),), -1)"
        )
    REGISTRY.add(layer_type, spec)


_WEIGHT = (Target("weight", 0, 1),)
register_layer(nn.Linear, LayerSpec(_WEIGHT, -1))
register_layer(nn.Conv2d, LayerSpec(_WEIGHT, 1))


def _ensure_event_linear() -> None:
    try:  # imported lazily: bio sits above nn in the import order and nn may be absent
        from braingate.nn.event_linear import EventLinear
    except ImportError:  # pragma: no cover - only while the core is incomplete
        return
    if EventLinear not in REGISTRY:
        register_layer(EventLinear, LayerSpec((Target("U", 0, 1), Target("V", 1, 0)), -1))


def layer_spec(module: nn.Module) -> LayerSpec | None:
    """The spec of ``module``'s type (nearest registered base class), or None."""
    _ensure_event_linear()
    for klass in type(module).__mro__:
        if klass in REGISTRY:
            return REGISTRY.get(klass)
    return None


def supported_types() -> tuple[type[nn.Module], ...]:
    """Registered layer types."""
    _ensure_event_linear()
    return tuple(REGISTRY.names())


def out_features(module: nn.Module) -> int:
    """Number of output channels of a supported layer (the axis weight splitting groups)."""
    spec = layer_spec(module)
    if spec is None:
        raise TypeError(f"{type(module).__name__} is not a supported layer")
    first = getattr(module, spec.targets[0].name)
    return int(first.shape[spec.targets[0].out_dim])
