"""Training with the event operation in the loop: differentiable event steps and synops.

Inside :class:`events_in_loop` every event layer of a model (any
:class:`~braingate.nn.base.EventModule`) runs its differentiable torch reference step
(``reference_step``) with autograd, one time step per call, with its own per-batch state. Learned thresholds (``layer.learn_thresholds()``) make
:func:`~braingate.functional.events.sigma_delta` use its surrogate gradient, so the event counts,
and with them the synops, are differentiable: :attr:`EventTape.synops` is the activity penalty.
Works with any stepping loop, snntorch neurons included (call ``bg.reset(model)`` first for them).
"""

from __future__ import annotations

import types

import torch
from torch import Tensor, nn

from braingate.functional.events import refuse_nonfinite
from braingate.nn.base import EventModule, event_modules
from braingate.sim.control import reset

__all__ = ["EventTape", "events_in_loop", "rollout"]


class EventTape:
    """Differentiable operation counts of an events-in-the-loop run, per sample.

    Attributes:
        synops: ``(B,)`` Σ over layers and steps of ``|E|·R_act + |L|·m`` (surrogate gradient
            when thresholds are learned).
        dense_synops: Σ over layers and steps of ``n·m`` (a float).
        layers: ``{name: {"input_events": (B,), "latent_events": (B,), "synops": (B,)}}``.
        steps: time steps seen.
    """

    def __init__(self) -> None:
        self.synops: Tensor | float = 0.0
        self.dense_synops = 0.0
        self.layers: dict[str, dict[str, Tensor]] = {}
        self.steps = 0

    def add(self, name: str, counts) -> None:
        """Add one step's :class:`~braingate.nn.base.Counts` of layer ``name``."""
        d = self.layers.setdefault(name, {"input_events": 0.0, "latent_events": 0.0, "synops": 0.0})
        for key in d:
            d[key] = d[key] + getattr(counts, key)
        self.synops = self.synops + counts.synops
        self.dense_synops += float(torch.as_tensor(counts.dense_synops).double().mean())

    def penalty(self, budget: float = 0.0) -> Tensor:
        r"""Relative activity ``mean_b(synops) / dense_synops`` above ``budget`` (0 for a silent
        network).

        .. math:: \mathcal A = \max\Big(0,\ \frac{1}{B}\sum_b
           \frac{\sum_{t,\ell} |E|R + |L|m}{\sum_{t,\ell} nm} - \text{budget}\Big)

        ``budget`` is the activity allowed for free, e.g. ``1 / 20`` to train towards 20× fewer
        synops than dense: once the network is under it, only the task loss moves the weights
        (with ``budget = 0`` every synop is penalised and activity keeps falling as long as
        training runs).
        """
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= budget < 1:
            raise ValueError(
                f"budget={budget!r} must be a relative activity in [0, 1) (e.g. 1/20 for 20x "
                "fewer synops than dense)"
            )
        if self.dense_synops == 0:
            return torch.zeros(())
        activity = torch.as_tensor(self.synops).float().mean() / self.dense_synops
        return (activity - budget).clamp_min(0.0) if budget else activity

    def ratio(self) -> float:
        """``dense_synops / synops`` of this run (inf when silent)."""
        s = float(torch.as_tensor(self.synops).detach().float().mean())
        return float("inf") if s == 0 else self.dense_synops / s


def _chunk_axis(layer: EventModule, x: Tensor) -> int | None:
    """The time axis of a length-1 sequence given to a recurrent layer written for torch's call
    (``out, h = self.gru(x)`` fed one step at a time): 0, or 1 with ``batch_first``; None for a
    plain step ``(B, ...)``."""
    torch_style = (getattr(layer, "recurrent", False) and getattr(layer, "return_state", False)
                   and not getattr(layer, "is_cell", False))  # fmt: skip
    if not torch_style or x.dim() != 3:
        return None
    axis = 1 if getattr(layer, "batch_first", False) else 0
    if x.shape[axis] != 1:
        raise ValueError(
            f"events_in_loop steps take one time step per call; this recurrent layer got a "
            f"sequence of {x.shape[axis]} steps (shape {tuple(x.shape)}); feed the model one step "
            "at a time (bg.train.rollout does)"
        )
    return axis


def _nonzero(hx) -> bool:
    parts = hx if isinstance(hx, (tuple, list)) else (hx,)
    return any(isinstance(p, Tensor) and bool(p.detach().ne(0).any()) for p in parts)


def _step_forward(name: str, tape: EventTape, states: dict):
    def forward(self: EventModule, x: Tensor, *args, **kwargs) -> Tensor:
        axis = _chunk_axis(self, x) if isinstance(x, Tensor) else None
        if axis is not None:  # torch-style call on a length-1 sequence: step, then re-wrap
            hx = args[0] if args else kwargs.get("hx")
            if hx is not None and states.get(name) is None and _nonzero(hx):
                raise ValueError(
                    f"layer {name!r} was given a non-zero initial state; training through events "
                    "starts every stream from zeros (pass hx=None or zeros)"
                )
            out = forward(self, x.select(axis, 0))
            y, h = out
            return y.unsqueeze(axis), h
        if not isinstance(x, Tensor) or x.dim() < 2:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"events_in_loop steps take one time step (B, ...) per call, got {shape}; call "
                "the model once per time step"
            )
        refuse_nonfinite(x.detach())
        B = x.shape[0]
        st = states.get(name)
        if st is None or states.get(name + ".batch") != B:
            st = self.init_state(B, x)
        y, st, counts = self.reference_step(x, st)
        states[name], states[name + ".batch"] = st, B
        tape.add(name, counts)
        return self.format_step(y, st)

    return forward


class events_in_loop:
    """Context manager: event layers of ``model`` step through their differentiable event path.

    Example:
        >>> import torch, braingate as bg
        >>> from braingate.train.events_in_loop import events_in_loop
        >>> net = torch.nn.Sequential(bg.EventLinear(4, 8, 2, threshold=0.1), torch.nn.ReLU())
        >>> net[0].learn_thresholds()
        >>> with events_in_loop(net) as tape:
        ...     ys = torch.stack([net(x) for x in torch.randn(5, 3, 4)])
        >>> tape.penalty().requires_grad
        True
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model
        self.tape = EventTape()
        self._states: dict = {}
        self._layers = list(event_modules(model).items())

    def __enter__(self) -> EventTape:
        for name, layer in self._layers:
            layer.forward = types.MethodType(_step_forward(name, self.tape, self._states), layer)
        return self.tape

    def __exit__(self, *exc) -> None:
        for _, layer in self._layers:
            layer.__dict__.pop("forward", None)


def rollout(model: nn.Module, xs: Tensor) -> tuple[Tensor, EventTape]:
    """Run ``model`` over a stream ``xs (T, B, ...)`` with events in the loop (autograd on).

    Resets the model's state first (snntorch neurons included); returns ``(ys (T, B, ...),
    tape)``; ``tape.penalty()`` is the differentiable activity penalty.
    """
    from braingate.sim.simulate import _Feed

    if not isinstance(xs, Tensor) or xs.dim() < 2:
        raise ValueError("xs must be a time-first tensor (T, B, ...)")
    feed = _Feed(model)  # xs[t], or a length-1 sequence for a model written for torch's call
    B = xs.shape[1]
    reset(model)
    with events_in_loop(model) as tape:
        ys = torch.stack([feed.output(model(feed.input(xs, t)), B) for t in range(xs.shape[0])])
        tape.steps = xs.shape[0]
    return ys, tape
