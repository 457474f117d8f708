"""The thresholds calibrate_thresholds() tunes: which layers, which attributes, on what scale.

Event layers are found by protocol (:func:`~braingate.nn.base.event_modules`: every outermost
:class:`~braingate.nn.base.EventModule` — linear, conv, recurrent alike). Each layer's knobs are its ``threshold_names``
(input first, latent last; ``("threshold", "latent_threshold")`` when the class does not say),
read and written as plain attributes. A knob's value during the search is ``base × multiplier``:
the base is the layer's current value (per unit if it was learned), or — when that is zero — a
tenth of the RMS step-to-step change of what the knob thresholds, measured on the exact dense run.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from braingate.nn.base import event_modules
from braingate.sim.simulate import simulate

__all__ = ["Knob", "event_layers", "knob_bases", "knob_names", "plain"]

Knob = tuple[str, str]  # (layer name, attribute)
_DEFAULT_NAMES = ("threshold", "latent_threshold")


def event_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{name: layer}`` of the outermost event layers of ``model``, in module order."""
    return dict(event_modules(model))


def knob_names(layer: nn.Module) -> tuple[str, ...]:
    """The threshold attributes of ``layer``: its ``threshold_names``, input first."""
    names = tuple(getattr(layer, "threshold_names", _DEFAULT_NAMES))
    return tuple(n for n in names if hasattr(layer, n))


def knob_bases(model: nn.Module, xs: Tensor, layers: dict[str, nn.Module]) -> dict[Knob, Tensor]:
    """Base value of every knob (current value, or a tenth of the change scale if zero)."""
    scales: dict | None = None
    out: dict[Knob, Tensor] = {}
    for name, layer in layers.items():
        for k in knob_names(layer):
            cur = torch.as_tensor(getattr(layer, k)).detach().clone()
            if bool((cur > 0).any()):
                out[name, k] = cur
                continue
            if scales is None:
                scales = change_scales(model, xs, layers)
            out[name, k] = torch.tensor(0.1 * scales[name].get(k, scales[name]["input"]))
    return out


def change_scales(model: nn.Module, xs: Tensor, layers: dict[str, nn.Module]) -> dict:
    """RMS step-to-step change of each layer's input (``"input"`` and the first knob) and, for
    layers with an input-side factor ``V`` ``(n, R)``, of the latent ``Vᵀx`` (the last knob);
    other knobs fall back to the input scale."""
    seen: dict[str, list[Tensor]] = {n: [] for n in layers}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, n=n: seen[n].append(inp[0].detach()))
        for n, m in layers.items()
    ]
    try:
        simulate(model, xs, mode="dense")
    finally:
        for h in hooks:
            h.remove()
    T = xs.shape[0]
    out = {}
    for name, layer in layers.items():
        calls = seen[name]
        if not calls:
            out[name] = {"input": 1.0}
            continue
        # one whole-sequence call (T, B, ...) or one call per step (B, ...)
        x = calls[0] if len(calls) == 1 and calls[0].shape[0] == T else torch.stack(calls)
        x = x.double()
        names = knob_names(layer)
        rin = _rms_change(x)
        scales = {"input": rin, **({names[0]: rin} if names else {})}
        V = getattr(layer, "V", None)
        if len(names) > 1 and isinstance(V, Tensor) and V.dim() == 2 and x.shape[-1] == V.shape[0]:
            scales[names[-1]] = _rms_change(x @ V.detach().double())
        out[name] = scales
    return out


def _rms_change(a: Tensor) -> float:
    if a.shape[0] < 2:
        return 1.0
    return max(float(a.diff(dim=0).pow(2).mean().sqrt()), 1e-6)


def plain(v: float | Tensor) -> float | list:
    """A threshold as JSON-ready data: a float, or a list for per-unit values."""
    if isinstance(v, Tensor):
        return v.detach().cpu().tolist() if v.dim() else float(v)
    return float(v)
