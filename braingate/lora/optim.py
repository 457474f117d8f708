"""LoRAOptimizer (LoRA+ learning rates, variant steps built in) and apply_lora_to_model.

LoRA+ (Hayou et al., ICML 2024, arXiv 2402.12354): B learns ``ratio`` times faster than A,

.. math:: \\eta_B = \\lambda\\, \\eta_A,

which PEFT's ``create_loraplus_optimizer`` implements with separate parameter groups; so does
this class. Each :meth:`LoRAOptimizer.step` also runs the variants' periodic updates
(AdaLoRA's budget allocation, PruningAwareLoRA's schedule) while the gradients are still there,
and can add the variants' regularisers' gradients (AdaLoRA's orthogonality) first, so a training
loop that only calls ``loss.backward(); opt.step(); opt.zero_grad()`` cannot forget them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from braingate.lora.config import LoRAConfig
from braingate.lora.model import LoRAModel

__all__ = ["LoRAOptimizer", "apply_lora_to_model"]


class LoRAOptimizer(torch.optim.Optimizer):
    """An optimizer over a LoRAModel's trainable parameters.

    It is a real ``torch.optim.Optimizer`` (LR schedulers accept it) that delegates the update
    to ``optimizer_class`` and shares its ``param_groups`` and ``state``.

    Args:
        model: the :class:`LoRAModel` (or any module: then there are no variant hooks).
        lr: learning rate of A (and of every non-B parameter).
        weight_decay: weight decay of every group.
        optimizer_class: the torch optimizer doing the update (default AdamW).
        loraplus_lr_ratio: B's learning rate is ``lr * ratio`` (None: plain LoRA, ratio 1).
        apply_regularizers: add ``model.regularization_loss()`` gradients before each step.
        **optimizer_kwargs: passed to ``optimizer_class``.
    """

    def __init__(
        self,
        model: nn.Module,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.AdamW,
        *,
        loraplus_lr_ratio: float | None = None,
        apply_regularizers: bool = True,
        **optimizer_kwargs: Any,
    ):
        if not isinstance(lr, (int, float)) or not lr > 0:
            raise ValueError(f"lr={lr!r} must be a positive number; pass e.g. lr=1e-3")
        if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
            raise ValueError(f"weight_decay={weight_decay!r} must be >= 0")
        if loraplus_lr_ratio is not None and not loraplus_lr_ratio > 0:
            raise ValueError(f"loraplus_lr_ratio={loraplus_lr_ratio!r} must be > 0 (e.g. 16)")
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("the model has no trainable parameters; wrap it with LoRAModel first")
        group_b = [p for n, p in named if loraplus_lr_ratio is not None and ".lora_B." in f".{n}."]
        ids_b = {id(p) for p in group_b}
        group_a = [p for _, p in named if id(p) not in ids_b]
        groups = [{"params": group_a, "lr": lr}]
        if group_b:
            groups.append({"params": group_b, "lr": lr * loraplus_lr_ratio})
        groups = [g for g in groups if g["params"]]
        self.model = model
        self.lr = lr
        self.weight_decay = weight_decay
        self.loraplus_lr_ratio = loraplus_lr_ratio
        self.apply_regularizers = apply_regularizers
        self.global_step = 0
        self.optimizer = optimizer_class(
            groups, lr=lr, weight_decay=weight_decay, **optimizer_kwargs
        )
        super().__init__(groups, dict(self.optimizer.defaults))
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Regulariser gradients, the update, then the variants' periodic step."""
        model = self.model
        if self.apply_regularizers and isinstance(model, LoRAModel):
            with torch.enable_grad():
                reg = model.regularization_loss()
            if reg.requires_grad:
                reg.backward()
        loss = self.optimizer.step(closure)
        self.global_step += 1
        if isinstance(model, LoRAModel):
            model.update_and_allocate(self.global_step)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset gradients."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state plus the step counter."""
        return {"optimizer": self.optimizer.state_dict(), "global_step": self.global_step}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output."""
        self.optimizer.load_state_dict(state_dict["optimizer"])
        self.global_step = int(state_dict["global_step"])
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state


def apply_lora_to_model(
    base_model: nn.Module,
    lora_config: LoRAConfig | Mapping[str, Any] | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    merge_weights: bool = False,
    **optimizer_kwargs: Any,
) -> tuple[LoRAModel, LoRAOptimizer]:
    """Wrap ``base_model`` with LoRA and build its optimizer (the seed's helper).

    Returns:
        ``(LoRAModel, LoRAOptimizer)``.
    """
    model = LoRAModel(base_model, lora_config, merge_weights=merge_weights)
    return model, LoRAOptimizer(model, lr=lr, weight_decay=weight_decay, **optimizer_kwargs)
