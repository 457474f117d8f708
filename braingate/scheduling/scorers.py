"""Complexity scorers: map a batch ``x (B, n)`` to per-sample scores in ``(0, 1)``.

Learned MLP scorers (trained by the layer's own objective, see
:class:`~braingate.nn.dynamic.DynamicLowRankLayer`) and statistic scorers that need no
training: the magnitude of the input, and the magnitude of its change since the previous step
(what an event stream gives for free: the number and size of input events).

A scorer reads the layer's input ``x (B, n)`` unless it has ``reads = "latent"``: then the
layer hands it its first ``units`` latent values :math:`z = s_{<k} \\odot V_{<k}^T x`, which
every sample computes anyway (the layer's rank floor covers them), so the scorer only adds its
own small MLP. ``flops()`` is the scorer's per-sample cost, priced into the layer's energy.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = [
    "InputChangeScorer",
    "LatentScorer",
    "MLPComplexityScorer",
    "MagnitudeScorer",
    "make_scorer",
    "scorer_flops",
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

    reads = "input"

    def forward(self, x: Tensor) -> Tensor:
        x = _check_2d(x, self.in_features)
        rms = x.pow(2).mean(dim=1, keepdim=True).add(1e-12).sqrt()
        feats = torch.cat([x / rms, torch.log(rms)], dim=1)
        return torch.sigmoid(self.net(feats)).squeeze(1)

    def flops(self, in_features: int | None = None) -> float:
        """Per-sample FLOPs: the RMS normalisation (``3n``) and the two-layer MLP (its own
        ``n``; the argument is ignored)."""
        h = self.net[0].out_features
        return 3.0 * self.in_features + 2.0 * (self.in_features + 1) * h + 2.0 * h + 4.0


class LatentScorer(MLPComplexityScorer):
    """Learned complexity from the layer's first ``units`` latent values.

    .. math:: c = \\sigma(w_2^T \\phi(W_1 \\hat z + b_1) + b_2), \\quad
              z = s_{<k} \\odot V_{<k}^T x

    with ``ẑ`` = ``z`` over its RMS plus the log RMS (as :class:`MLPComplexityScorer`). The
    layer passes ``z`` detached: the scorer never moves the factors.

    Args:
        units: ``k``, latent units read (at most the layer's rank floor, so they cost nothing
            extra).
        hidden: hidden width.

    Shape: ``(B, k) -> (B,)``, differentiable.
    """

    reads = "latent"

    def __init__(self, units: int, hidden: int = 32, device=None, dtype=None) -> None:
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(f"units={units!r} must be a positive int (latent units to read)")
        super().__init__(units, hidden, device, dtype)

    @property
    def units(self) -> int:
        return self.in_features


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

    reads = "input"

    def flops(self, in_features: int = 0) -> float:
        """Per-sample FLOPs: the norm (``2n``) and the normalisation."""
        return 2.0 * in_features + 3.0

    def forward(self, x: Tensor) -> Tensor:
        x = _check_2d(x)
        return self._normalise(x.norm(dim=1) / x.shape[1] ** 0.5)


class InputChangeScorer(_StatisticScorer):
    """Change since the previous call :math:`d_i = \\lVert x_{t,i} - x_{t-1,i} \\rVert_2 / \\sqrt n`.

    Stateful over a stream (call ``reset()`` between sequences); the first step compares with
    zero. A batch of a different size restarts the stream. Shape ``(B, n) -> (B,)``.
    """

    reads = "input"

    def __init__(self, momentum: float = 0.05) -> None:
        super().__init__(momentum)
        self._prev: Tensor | None = None

    def flops(self, in_features: int = 0) -> float:
        """Per-sample FLOPs: the difference and its norm (``3n``) and the normalisation."""
        return 3.0 * in_features + 3.0

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
    "latent": LatentScorer,
    "mlp": MLPComplexityScorer,
    "magnitude": MagnitudeScorer,
    "input_change": InputChangeScorer,
}


def scorer_names() -> list[str]:
    """Registered scorer names."""
    return sorted(_SCORERS)


def make_scorer(name: str, in_features: int, hidden: int = 32, **kw) -> nn.Module:
    """Build a scorer by name (``mlp`` takes ``in_features`` and ``hidden``; ``latent`` takes
    the latent units to read as ``in_features``)."""
    if name not in _SCORERS:
        raise ValueError(f"unknown scorer {name!r}; known: {', '.join(scorer_names())}")
    if name in ("mlp", "latent"):
        return _SCORERS[name](in_features, hidden, **kw)
    return _SCORERS[name](**kw)


def scorer_flops(scorer: nn.Module, in_features: int) -> float | None:
    """Per-sample FLOPs of ``scorer`` on a layer with ``in_features`` inputs (None if unknown)."""
    fn = getattr(scorer, "flops", None)
    if not callable(fn):
        return None
    try:
        return float(fn(in_features))
    except TypeError:
        return float(fn())
