"""Helpers shared by the core tests."""

import torch
from torch import nn

import braingate as bg


def dense_out(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` with every event layer in dense execution (modes restored afterwards)."""
    with bg.execution(model, "dense"):
        return model(x)
