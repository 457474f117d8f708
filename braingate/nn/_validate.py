"""Argument checks shared by braingate modules: clear errors naming the argument and the fix."""

from __future__ import annotations

import math

import torch
from torch import Tensor

EXECUTION_MODES = ("dense", "event", "auto")


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name}={value} must be positive; pass {name}>=1")
    return value


def threshold(name: str, value: object, size: int) -> float | Tensor:
    """A non-negative finite scalar, or a tensor of ``size`` per-unit values."""
    if isinstance(value, Tensor):
        t = value.detach()
        if t.dim() > 1 or (t.dim() == 1 and t.shape[0] != size):
            raise ValueError(
                f"{name} tensor has shape {tuple(t.shape)}; pass a scalar or shape ({size},)"
            )
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise ValueError(f"{name} must be finite and >= 0 everywhere; got {t.tolist()}")
        return value if t.dim() == 1 else float(t)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or tensor, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}={value} must be finite and >= 0; pass e.g. {name}=0.05")
    return float(value)


def execution_mode(value: object) -> str:
    if value not in EXECUTION_MODES:
        raise ValueError(f"execution={value!r} is unknown; pass one of {EXECUTION_MODES}")
    return value  # type: ignore[return-value]


def layer_input(x: object, n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        raise TypeError(
            f"input has layout {x.layout}; event layers take dense tensors: x.to_dense()"
        )
    if x.dim() == 0 or x.shape[-1] != n:
        raise ValueError(f"input has shape {tuple(x.shape)} but in_features={n}; pass (..., {n})")
    if x.numel() == 0:
        raise ValueError(f"input has shape {tuple(x.shape)}: no samples; pass at least one")
    if x.dtype != dtype:
        raise TypeError(
            f"input dtype {x.dtype} differs from the layer's {dtype}; use x.to({dtype})"
        )
    if x.device != device:
        raise ValueError(
            f"input is on {x.device} but the layer is on {device}; move one with .to({device!s})"
        )
    return x
