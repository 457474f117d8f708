"""LIF: a leaky integrate-and-fire neuron layer with snntorch ``Leaky`` semantics, compiled on CPU."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from braingate.functional import _kernels
from braingate.functional.lif import lif_step

__all__ = ["LIF"]


class LIF(nn.Module):
    r"""Leaky integrate-and-fire neurons; one call is one time step.

    .. math:: u_t = β u_{t-1} + x_t - [u_{t-1} > ϑ]\,ϑ,\qquad s_t = [u_t > ϑ]

    Same update as snntorch's ``Leaky`` (reset by subtraction computed from the previous
    membrane, or reset to zero), so a converted network spikes identically. The state is per
    instance; :func:`braingate.reset` clears it. Without autograd on CPU the step runs as one
    compiled loop; otherwise :func:`braingate.functional.lif.lif_step` (torch, differentiable
    through ``x`` with a straight-through spike, no surrogate) is used.

    Args:
        size: number of neurons ``n`` (beta / threshold broadcast to it).
        beta: decay in [0, 1] (scalar or ``(n,)``). threshold: ϑ > 0 (scalar or ``(n,)``).
        reset: ``"subtract"`` (default) or ``"zero"``.

    Shape: ``(B, n) -> (B, n)`` spikes in {0, 1}.
    """

    def __init__(
        self, size: int, beta: float | Tensor = 0.9, threshold: float | Tensor = 1.0,
        reset: str = "subtract",
    ) -> None:  # fmt: skip
        super().__init__()
        if reset not in ("subtract", "zero"):
            raise ValueError(f"reset={reset!r} is unknown; pass 'subtract' or 'zero'")
        self.size, self.reset_mode = size, reset
        self.register_buffer("beta", self._per_neuron("beta", beta))
        self.register_buffer("threshold", self._per_neuron("threshold", threshold))
        self.mem: Tensor | None = None

    def _per_neuron(self, name: str, value) -> Tensor:
        """``value`` (scalar or ``(n,)``) as a validated float32 ``(n,)`` buffer."""
        try:
            v = torch.as_tensor(value, dtype=torch.float32).expand(self.size).clone()
        except RuntimeError as e:
            raise ValueError(f"{name} must be a scalar or ({self.size},); got {value!r}") from e
        bad = (v < 0) | (v > 1) if name == "beta" else v <= 0
        if bool(bad.any()):
            rule = "lie in [0, 1]" if name == "beta" else "be > 0"
            raise ValueError(f"{name} must {rule}; got {v.unique().tolist()[:4]}")
        return v

    def __setattr__(self, name: str, value) -> None:
        if name in ("beta", "threshold") and "_buffers" in self.__dict__:
            # a new value of any broadcastable shape becomes the (n,) buffer the kernels read
            value = self._per_neuron(name, value).to(self._buffers[name].device)
        super().__setattr__(name, value)

    @classmethod
    def from_snntorch(cls, leaky: nn.Module, size: int) -> LIF:
        """Build from an ``snntorch.Leaky`` (beta, threshold and reset mechanism)."""
        mech = getattr(leaky, "reset_mechanism", "subtract")
        if mech not in ("subtract", "zero"):
            raise ValueError(f"snntorch reset_mechanism={mech!r} has no LIF equivalent")
        beta = leaky.beta.detach().clamp(0, 1).float()
        return cls(size, beta, leaky.threshold.detach().float(), mech)

    def reset(self) -> None:
        """Clear the membrane (zeroed in place when it is not on the autograd graph, so
        compiled chains keep stepping on the same array)."""
        if self.mem is not None and not self.mem.requires_grad:
            self.mem.zero_()
        else:
            self.mem = None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.size:
            raise ValueError(f"LIF expects (B, {self.size}) per step, got {tuple(x.shape)}")
        if self.mem is None or self.mem.shape != x.shape:
            self.mem = torch.zeros_like(x)
        fast = (
            _kernels.AVAILABLE and x.device.type == "cpu" and x.dtype == torch.float32
            and not (torch.is_grad_enabled() and x.requires_grad)
        )  # fmt: skip
        if fast:
            return torch.from_numpy(self.step_np(x.contiguous().numpy()))
        spk, self.mem = lif_step(x, self.mem, self.beta.to(x.dtype), self.threshold.to(x.dtype),
                                 self.reset_mode)  # fmt: skip
        return spk

    def step_np(self, xn: np.ndarray) -> np.ndarray:
        """Compiled step on a C-contiguous float32 numpy ``(B, n)``; returns the spikes."""
        if self.mem is None or tuple(self.mem.shape) != xn.shape:
            self.mem = torch.zeros(xn.shape, dtype=torch.float32)
        out = np.empty(xn.shape, np.float32)
        _kernels.lif_step_np(xn, self.mem.numpy(), self.beta.numpy(), self.threshold.numpy(),
                             self.reset_mode == "zero", out)  # fmt: skip
        return out

    def extra_repr(self) -> str:
        return f"size={self.size}, reset={self.reset_mode!r}"
