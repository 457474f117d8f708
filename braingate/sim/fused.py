"""One call per time step for a whole chain of event layers: no module dispatch in between.

At batch 1 the arithmetic of a sparse step is a few microseconds per layer; PyTorch's module call,
argument checks and tensor wrapping cost more than that. :class:`EventChain` walks an
``nn.Sequential`` of :class:`~braingate.nn.EventLinear` layers (event mode) and elementwise
activations with numpy arrays, calling each layer's compiled step directly. It uses the layers'
own state and counters, so it computes exactly what ``model(x)`` computes step by step, and
:func:`braingate.simulate` uses it automatically when it applies.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from braingate.functional import _kernels
from braingate.nn.event_linear import EventLinear
from braingate.nn.lif import LIF

__all__ = ["EventChain", "compile_events"]

_ELEMENTWISE = (nn.ReLU, nn.Identity, nn.Dropout)


class EventChain:
    """Compiled event-mode stepping of ``nn.Sequential(EventLinear | ReLU | LIF | Identity ...)``.

    Args:
        model: the sequential network; every EventLinear must be in ``"event"`` execution, on
            CPU, float32 or float64 (the chain checks at each call and says what is wrong).

    Shape: ``(B, n) -> (B, m)`` per call; call :func:`braingate.reset` between streams.
    """

    def __init__(self, model: nn.Module) -> None:
        reason = why_not_fusable(model)
        if reason:
            raise TypeError(f"cannot fuse this model: {reason}")
        self.model = model
        self.modules = list(model) if isinstance(model, nn.Sequential) else [model]
        first = self.modules[0]
        self.in_features = first.in_features if isinstance(first, EventLinear) else first.size
        self.dtype = next(m.U.dtype for m in self.modules if isinstance(m, EventLinear))

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features or x.dtype != self.dtype or x.is_cuda:
            return self.model(x)  # nothing has run yet: the module path raises the precise error
        h = (x.detach() if x.requires_grad else x).contiguous().numpy()
        for mod in self.modules:
            if isinstance(mod, EventLinear):
                h = mod._runner.step_np(mod, h)
            elif isinstance(mod, LIF):
                h = mod.step_np(np.ascontiguousarray(h, np.float32))
            elif isinstance(mod, nn.ReLU):
                h = np.maximum(h, 0)
        return torch.from_numpy(h)


_NP = {torch.float32: np.float32, torch.float64: np.float64}


def why_not_fusable(model: nn.Module) -> str:
    """Empty string if :class:`EventChain` can run ``model``, else the reason."""
    if not _kernels.AVAILABLE:
        return "the compiled kernels (numba) are not available"
    mods = list(model) if isinstance(model, nn.Sequential) else [model]
    layers = [m for m in mods if isinstance(m, EventLinear)]
    if not layers:
        return "it has no EventLinear layer"
    dtypes = {m.U.dtype for m in layers}
    if len(dtypes) > 1 or (dtypes != {torch.float32} and any(isinstance(m, LIF) for m in mods)):
        return f"mixed dtypes {sorted(map(str, dtypes))} (LIF needs float32 layers)"
    width = None  # features flowing between modules; checked so the kernels never overrun
    for i, m in enumerate(mods):
        if isinstance(m, EventLinear):
            if m.execution != "event":
                return f"layer {i} has execution={m.execution!r}, not 'event'"
            if m.U.device.type != "cpu" or m.U.dtype not in _NP:
                return f"layer {i} is {m.U.dtype} on {m.U.device}; needs float32/64 on CPU"
            if width is not None and width != m.in_features:
                return f"layer {i} takes {m.in_features} features but receives {width}"
            width = m.out_features
        elif isinstance(m, LIF):
            if width is not None and width != m.size:
                return f"LIF {i} has size {m.size} but receives {width} features"
            width = m.size
        elif not isinstance(m, _ELEMENTWISE) or (isinstance(m, nn.Dropout) and m.training):
            return f"module {i} ({type(m).__name__}) is not an EventLinear, LIF, ReLU or Identity"
    return ""


def compile_events(model: nn.Module) -> EventChain:
    """An :class:`EventChain` for ``model`` (TypeError with the reason when it cannot fuse)."""
    return EventChain(model)
