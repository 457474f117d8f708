"""Leaky integrate-and-fire step (snntorch ``Leaky`` semantics, reset by subtraction or to zero)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["lif_step"]


def lif_step(
    x: Tensor, mem: Tensor, beta: float | Tensor, threshold: float | Tensor, reset: str = "subtract"
) -> tuple[Tensor, Tensor]:
    r"""One LIF step with the reset computed from the previous membrane (snntorch ``Leaky``).

    .. math::
        r_t = [u_{t-1} > ϑ],\quad
        u_t = β u_{t-1} + x_t - r_t ϑ \;(\text{subtract})\ \text{or}\ β (1 - r_t) u_{t-1} + x_t
        \;(\text{zero}),\quad s_t = [u_t > ϑ]

    With a reset to zero the membrane is cleared before this step's input arrives, so the input
    of the step after a spike counts (snntorch ``Leaky(reset_mechanism="zero")``, NIR's LIF).

    Args:
        x: input current ``(B, n)``; mem: membrane ``u_{t-1}``, same shape.
        beta: decay in [0, 1]; threshold: ϑ > 0 (scalars or per-neuron tensors).
        reset: ``"subtract"`` or ``"zero"``.

    Returns:
        ``(spikes, mem)``: spikes in {0, 1} of ``x``'s dtype and the new membrane.
    """
    fired = (mem > threshold).to(x.dtype)
    if reset == "subtract":
        u = beta * mem + x - fired * threshold
    else:
        u = beta * (mem * (1 - fired)) + x
    return (u > threshold).to(x.dtype), u
