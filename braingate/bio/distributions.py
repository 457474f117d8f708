"""Samplers for the learning-rate multipliers P, one per :class:`Distribution` (a registry).

Every sampler draws P with mean 1 before clamping to ``[fuzzy_lr_min, fuzzy_lr_max]``:

=================  ==========================================================================
BASELINE           ``P = 1``
UNIFORM            ``P = 1 + U(−ν, ν)``
NORMAL             ``P = 1 + N(0, ν)``
LOGNORMAL          ``P = exp(N(−ν²/2, ν))``
GAMMA              ``P ~ Gamma(shape 1/ν², scale ν²)`` (mean 1, std ν)
BETA               ``P = 1 + (2·Beta(1/ν, 1/ν) − 1)·ν``
LAYER_ADAPTIVE     UNIFORM with ``ν_l = ν·(1 − 0.5·l/L)`` for layer ``l`` of ``L``
WEIGHT_ADAPTIVE    ``P = 1 + U(−1, 1)·ν·clamp(2 − |w|/mean|w|, 0.5, 1.5)``
TEMPORAL           NORMAL at start; evolves by ``functional.temporal_step``
ACTIVITY           NORMAL at start; rows rescaled by ``functional.activity_multipliers``
=================  ==========================================================================

Randomness comes from torch's global generator (seed it with ``torch.manual_seed``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from braingate._registry import Registry
from braingate.bio.bio_config import BioConfig, Distribution


class SampleContext(NamedTuple):
    """Where the weight sits: layer ``layer_index`` (0-based) of ``num_layers`` converted ones."""

    layer_index: int = 0
    num_layers: int = 1


Sampler = Callable[[Tensor, float, SampleContext], Tensor]
REGISTRY: Registry[Sampler] = Registry("bio distribution")


def register_distribution(dist: Distribution) -> Callable[[Sampler], Sampler]:
    """Decorator: register ``fn(weight, nu, ctx) -> P`` (unclamped, shaped like weight).

    One sampler per :class:`Distribution`; registering a taken one raises ``ValueError``.
    """
    if not isinstance(dist, Distribution):
        known = ", ".join(d.name for d in Distribution)
        raise TypeError(f"dist={dist!r} is not a Distribution; pass one of {known}")
    return REGISTRY.register(dist)


def get_sampler(dist: Distribution) -> Sampler:
    """The sampler registered for ``dist``; an unknown one lists the known ones."""
    return REGISTRY.get(dist)


def _uniform(w: Tensor, half_width: float | Tensor) -> Tensor:
    return 1.0 + (2.0 * torch.rand_like(w) - 1.0) * half_width


@register_distribution(Distribution.BASELINE)
def _baseline(w: Tensor, nu: float, ctx: SampleContext) -> Tensor:
    return torch.ones_like(w)


@register_distribution(Distribution.UNIFORM)
def _uniform_dist(w: Tensor, nu: float, ctx: SampleContext) -> Tensor:
    return _uniform(w, nu)


@register_distribution(Distribution.NORMAL)
@register_distribution(Distribution.TEMPORAL)
@register_distribution(Distribution.ACTIVITY)
def _normal(w: Tensor, nu: float, ctx: SampleContext) -> Tensor:
    return 1.0 + nu * torch.randn_like(w)


@register_distribution(Distribution.LOGNORMAL)
def _lognormal(w: Tensor, nu: float, ctx: SampleContext) -> Tensor:
    return torch.exp(-0.5 * nu * nu + nu * torch.randn_like(w))


@register_distribution(Distribution.GAMMA)
def _gamma(w: Tensor, nu: float, ctx: SampleContext) -> Tensor:
    if nu == 0.0:
        return torch.ones_like(w)
    shape = torch.full_like(w, 1.0 / (nu * nu))
    return torch._standard_gamma(shape) * (nu * nu)


@register_distribution(Distribution.BETA)
def _beta(w: Tensor, nu: float, ctx: SampleContext) -> Tensor:
    if nu == 0.0:
        return torch.ones_like(w)
    a = torch.full_like(w, 1.0 / nu)
    x, y = torch._standard_gamma(a), torch._standard_gamma(a)
    return 1.0 + (2.0 * x / (x + y) - 1.0) * nu


@register_distribution(Distribution.LAYER_ADAPTIVE)
def _layer_adaptive(w: Tensor, nu: float, ctx: SampleContext) -> Tensor:
    depth = ctx.layer_index / max(ctx.num_layers, 1)
    return _uniform(w, nu * (1.0 - 0.5 * depth))


@register_distribution(Distribution.WEIGHT_ADAPTIVE)
def _weight_adaptive(w: Tensor, nu: float, ctx: SampleContext) -> Tensor:
    magnitude = w.detach().abs()
    mean = magnitude.mean().clamp_min(torch.finfo(w.dtype).tiny)
    return _uniform(w, nu * (2.0 - magnitude / mean).clamp(0.5, 1.5))


def draw_multipliers(weight: Tensor, config: BioConfig, ctx: SampleContext) -> Tensor:
    """Draw P for ``weight`` from ``config.fuzzy_lr_distribution``, clamped to the lr range.

    Returns:
        A detached tensor shaped like ``weight``, values in ``[fuzzy_lr_min, fuzzy_lr_max]``.
    """
    with torch.no_grad():
        sampler = get_sampler(config.fuzzy_lr_distribution)
        raw = sampler(weight.detach(), float(config.fuzzy_learning_rate_factor_nu), ctx)
        return raw.clamp(config.fuzzy_lr_min, config.fuzzy_lr_max).to(weight.dtype)
