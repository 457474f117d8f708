"""Workers for test_ddp.py (spawned processes import this module by name)."""

from __future__ import annotations

import torch
from torch import nn

import braingate as bg

STEPS, LR = 5, 0.1


def make_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        bg.EventLinear(8, 16, 8, blocks=2, threshold=0.05), nn.Tanh(), bg.EventLinear(16, 3, 3)
    )
    model[0].set_active_blocks(1)
    return model


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, dict]:
    """STEPS of SGD on (x, y); returns the first step's gradients and the final parameters."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    first = {}
    for step in range(STEPS):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if step == 0:
            first = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
        opt.step()
    return first, {n: p.detach().clone() for n, p in model.named_parameters()}


def ddp_worker(rank: int, world: int) -> tuple[dict, dict, str]:
    """Train under DDP on this rank's half; first check that a mismatched replica is refused."""
    from braingate.integrations.distributed import wrap_ddp

    refused = mismatch_worker(rank, world)
    x, y = make_data()
    ddp = wrap_ddp(make_model())
    grads, params = train(ddp, x[rank::world], y[rank::world])
    strip = len("module.")
    grads = {n[strip:]: g for n, g in grads.items()}
    return grads, {n[strip:]: p for n, p in params.items()}, refused


def mismatch_worker(rank: int, world: int) -> str:
    from braingate.integrations.distributed import wrap_ddp

    model = make_model()
    if rank == 1:
        model[0].threshold = 0.5
    try:
        wrap_ddp(model)
    except ValueError as e:
        return str(e)
    return "no error"
