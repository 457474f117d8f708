"""Complexity scorers: map a batch ``x (B, n)`` to per-sample scores in ``(0, 1)``.

A learned MLP scorer (differentiable, trained through the layer's straight-through mask and
the energy regulariser) and statistic scorers that need no training: the magnitude of the
input, and the magnitude of its change since the previous step (what an event stream gives
for free: the number and size of input events).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "InputChangeScorer",
    "MLPComplexityScorer",
    "MagnitudeScorer",
    "make_scorer",
    "scorer_names",
]


def _check_2d(x: Tensor, n: int | None = None) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2 or (n is not None and x.shape[1] != n):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        want = f"(B, {n})" if n is not None else "(B, n)"
        raise ValueError(f"x has shape {shape}; a scorer takes a batch of shape {want}")
    return x


class MLPComplexityScorer(nn.Module):
    """Learned per-sample complexity: :math:`c = \\sigma(w_2^T \\phi(W_1 \\hat x + b_1) + b_2)`.

    ``x̂`` is ``x`` divided by its per-sample RMS (so the score reacts to the input's shape,
    not its scale; the RMS itself is appended as one log-feature).

    Args:
        in_features: input size ``n``.
        hidden: hidden width.

    Shape: ``(B, n) -> (B,)``, differentiable.
    """

    def __init__(self, in_features: int, hidden: int = 32, device=None, dtype=None) -> None:
        super().__init__()
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"scorer_hidden={hidden!r} must be a positive int, e.g. 32")
        kw = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.net = nn.Sequential(
            nn.Linear(in_features + 1, hidden, **kw), nn.GELU(), nn.Linear(hidden, 1, **kw)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = _check_2d(x, self.in_features)
        rms = x.pow(2).mean(dim=1, keepdim=True).add(1e-12).sqrt()
        feats = torch.cat([x / rms, torch.log(rms)], dim=1)
        return torch.sigmoid(self.net(feats)).squeeze(1)


class _StatisticScorer(nn.Module):
    """Shared normalisation :math:`c = d / (d + \\bar d)`, :math:`\\bar d` a running mean of ``d``.

    A sample at the running average scores 0.5; twice the average scores 2/3.
    """

    def __init__(self, momentum: float = 0.05) -> None:
        super().__init__()
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum={momentum!r} must be in (0, 1]")
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def _normalise(self, d: Tensor) -> Tensor:
        d = d.detach()
        with torch.no_grad():
            mean = d.mean()
            if int(self.seen) == 0:
                self.running_mean.copy_(mean)
            else:
                self.running_mean.lerp_(mean, self.momentum)
            self.seen += 1
        return d / (d + self.running_mean.clamp(min=1e-12))


class MagnitudeScorer(_StatisticScorer):
    """Input magnitude :math:`d_i = \\lVert x_i \\rVert_2 / \\sqrt n`, normalised. Shape ``(B, n) -> (B,)``."""

    def forward(self, x: Tensor) -> Tensor:
        x = _check_2d(x)
        return self._normalise(x.norm(dim=1) / x.shape[1] ** 0.5)


class InputChangeScorer(_StatisticScorer):
    """Change since the previous call :math:`d_i = \\lVert x_{t,i} - x_{t-1,i} \\rVert_2 / \\sqrt n`.

    Stateful over a stream (call ``reset()`` between sequences); the first step compares with
    zero. A batch of a different size restarts the stream. Shape ``(B, n) -> (B,)``.
    """

    def __init__(self, momentum: float = 0.05) -> None:
        super().__init__(momentum)
        self._prev: Tensor | None = None

    def reset(self) -> None:
        """Forget the previous step."""
        self._prev = None

    def forward(self, x: Tensor) -> Tensor:
        x = _check_2d(x).detach()
        prev = (
            self._prev
            if self._prev is not None and self._prev.shape == x.shape
            else torch.zeros_like(x)
        )
        self._prev = x.clone()
        return self._normalise((x - prev).norm(dim=1) / x.shape[1] ** 0.5)


_SCORERS = {
    "mlp": MLPComplexityScorer,
    "magnitude": MagnitudeScorer,
    "input_change": InputChangeScorer,
}


def scorer_names() -> list[str]:
    """Registered scorer names."""
    return sorted(_SCORERS)


def make_scorer(name: str, in_features: int, hidden: int = 32, **kw) -> nn.Module:
    """Build a scorer by name (``mlp`` takes ``in_features`` and ``hidden``)."""
    if name not in _SCORERS:
        raise ValueError(f"unknown scorer {name!r}; known: {', '.join(scorer_names())}")
    if name == "mlp":
        return MLPComplexityScorer(in_features, hidden, **kw)
    return _SCORERS[name](**kw)
