"""EventLoRA: an adapter whose delta path is an :class:`~braingate.nn.event_linear.EventLinear`.

The frozen base stays a dense layer; the adapter is a factored layer
:math:`\\Delta W = U\\,\\mathrm{diag}(s)\\,V^T` with :math:`V = A^T` (Kaiming-uniform, as LoRA's
A), :math:`U = B = 0` and :math:`s = \\alpha / r` at init, so training starts exactly where plain
LoRA starts (s, the scaling, is trained with U and V: r extra parameters).

.. math:: y_t = W_0 x_t + b + U\\,\\mathrm{diag}(s)\\,V^T x_t

In ``execution="event"`` (e.g. inside ``bg.simulate(model, xs, mode="event")``) the adapter
sends only input coordinates whose change crosses ``threshold`` and rank units whose change
crosses ``latent_threshold`` (DESIGN.md §2), so a slowly changing stream costs the adapter far
fewer synaptic operations than ``(n + m)·r`` per step, and ``simulate`` counts them under the
adapter's module name (the dense base is counted as an ``nn.Linear``). With both thresholds 0
the event path equals the dense one; merging folds ``U diag(s) Vᵀ`` into the base.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from braingate.lora.variants.base import LoRAVariant
from braingate.lora.variants.registry import VariantConfig, register_variant
from braingate.nn.event_linear import EventLinear

__all__ = ["EventLoRA", "EventLoRAConfig"]


@dataclass(frozen=True)
class EventLoRAConfig(VariantConfig):
    """Input threshold θ and latent threshold θ_z of the adapter's event path."""

    name = "event"
    threshold: float = 0.0
    latent_threshold: float = 0.0

    def __post_init__(self) -> None:
        for f in ("threshold", "latent_threshold"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{f}={v!r} must be a number >= 0")


@register_variant(EventLoRAConfig)
class EventLoRA(LoRAVariant):
    """LoRA delta computed by an event-driven factored layer (linear layers)."""

    kinds = frozenset({"linear"})
    has_factors = False

    def build(self, adapter, base_weight) -> None:
        w = base_weight()
        n, m, r = adapter.kind.in_features, adapter.kind.out_features, adapter.rank
        if r > min(n, m):
            raise ValueError(f"rank={r} exceeds min(in, out)={min(n, m)} for EventLoRA; lower rank")
        event = EventLinear(
            n, m, r, bias=False, threshold=self.config.threshold,
            latent_threshold=self.config.latent_threshold, device=w.device, dtype=w.dtype,
        )  # fmt: skip
        if "bias" not in event._parameters:
            # EventLinear(bias=False) leaves `bias` a plain attribute, which its event runner
            # looks up in _parameters; register it as an absent parameter instead.
            object.__delattr__(event, "bias")
            event.register_parameter("bias", None)
        with torch.no_grad():
            a = torch.empty(r, n, device=w.device, dtype=w.dtype)
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            event.V.copy_(a.t())
            if adapter.init_mode is False:
                nn.init.kaiming_uniform_(event.U, a=math.sqrt(5))
            else:
                event.U.zero_()
            event.s.fill_(adapter.scaling)
        adapter.event = event

    def forward(self, adapter, x: Tensor, base_weight) -> Tensor:
        return adapter.event(adapter.dropout(x))

    def delta_weight(self, adapter, base_weight: Tensor) -> Tensor:
        ev = adapter.event
        return (ev.U * ev.s) @ ev.V.t()
