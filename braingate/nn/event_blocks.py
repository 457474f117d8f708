"""Blocks that combine event streams: residual addition (ResNet-style event CNNs)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["EventResidual"]


class EventResidual(nn.Module):
    r"""``y = body(x) + shortcut(x)``: the sum of two streams, each computed by its own modules.

    .. math:: y_t = f(x_t) + g(x_t)\qquad (g = \mathrm{id}\ \text{without a shortcut})

    The sum is taken on the values each branch passes on (its accumulated state), not on its
    deltas, so it is exact whatever each branch's thresholds skipped: in event mode every event
    layer inside ``body`` and ``shortcut`` steps on its own state, and the error of ``y`` is at
    most the sum of the branches' bounds. The addition itself is elementwise (counted with
    neither synops nor dense synops, like ReLU). ``bg.simulate``, ``bg.reset``, calibration and
    ``compile_events`` see the event layers inside (a chain runs this block as a module call
    between its compiled segments).

    Args:
        body: the residual branch (e.g. conv, ReLU, conv).
        shortcut: the other branch (e.g. a 1×1 conv when the channels change); None: identity.

    Shape: any; both branches must return the same shape.
    """

    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(body, nn.Module):
            raise TypeError(f"body must be an nn.Module, got {type(body).__name__}")
        if shortcut is not None and not isinstance(shortcut, nn.Module):
            raise TypeError(f"shortcut must be an nn.Module or None, got {type(shortcut).__name__}")
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.body(x)
        s = x if self.shortcut is None else self.shortcut(x)
        if y.shape != s.shape:
            raise ValueError(
                f"residual branches disagree: body gives {tuple(y.shape)}, shortcut gives "
                f"{tuple(s.shape)}; pass a shortcut (e.g. a 1x1 conv) that matches the body"
            )
        return y + s
