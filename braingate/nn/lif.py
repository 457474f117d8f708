"""LIF: a leaky integrate-and-fire neuron layer with snntorch ``Leaky`` semantics, compiled on CPU."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from torch import Tensor, nn

from braingate.functional import _kernels
from braingate.functional.lif import lif_step
from braingate.nn._validate import positive_int

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
        positive_int("size", size)
        if not isinstance(reset, str) or reset not in ("subtract", "zero"):
            raise ValueError(f"reset={reset!r} is unknown; pass 'subtract' or 'zero'")
        self.size, self.reset_mode = size, reset
        self.register_buffer("beta", self._per_neuron("beta", beta))
        self.register_buffer("threshold", self._per_neuron("threshold", threshold))
        self.mem: Tensor | None = None

    def _per_neuron(self, name: str, value) -> Tensor:
        """``value`` (scalar or ``(n,)``) as a validated float32 ``(n,)`` buffer.

        beta must lie in [0, 1], threshold must be finite and > 0; NaN fails both.
        """
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, Tensor, np.ndarray)):
            raise TypeError(
                f"{name}={value!r} must be a number or a tensor of shape ({self.size},)"
            )
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.asarray(value))
        if isinstance(value, Tensor) and (value.is_complex() or value.dtype == torch.bool):
            raise TypeError(f"{name} has dtype {value.dtype}; pass a real-valued tensor")
        try:
            v = torch.as_tensor(value, dtype=torch.float32).detach().expand(self.size).clone()
        except RuntimeError as e:
            shape = tuple(value.shape) if isinstance(value, Tensor) else ()
            raise ValueError(
                f"{name} has shape {shape}; pass a scalar or a tensor of shape ({self.size},)"
            ) from e
        if name == "beta":
            bad, rule, example = ~((v >= 0) & (v <= 1)), "lie in [0, 1]", "beta=0.9"
        else:
            bad, rule, example = (
                ~(torch.isfinite(v) & (v > 0)),
                "be finite and > 0",
                "threshold=1.0",
            )
        if bool(bad.any()):
            got = float(value) if not isinstance(value, Tensor) else v[bad].unique().tolist()[:4]
            where = "" if not isinstance(value, Tensor) else " (offending entries)"
            raise ValueError(f"{name}={got}{where} must {rule}; pass e.g. {example}")
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
