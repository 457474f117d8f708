"""How many optimizer steps this process has taken (any ``torch.optim`` optimizer).

Event layers cache kernel arguments built from their factors and notice edits through version
counters. Some optimizers update parameters without moving them (the CPU ``fused=True`` kernels
of Adam/AdamW/SGD), so the caches also compare this count: any optimizer step re-reads the
factors at the next event step.
"""

from __future__ import annotations

from torch.optim.optimizer import register_optimizer_step_post_hook

__all__ = ["optimizer_steps"]

_STEPS = [0]


def _count(optimizer, args, kwargs) -> None:
    _STEPS[0] += 1


register_optimizer_step_post_hook(_count)


def optimizer_steps() -> int:
    """Optimizer steps taken so far in this process (all optimizers together)."""
    return _STEPS[0]
