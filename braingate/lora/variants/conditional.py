"""ConditionalLoRA: one (A, B) pair per task, chosen per sample by ``task_ids`` (the seed's
multi-task LoRA).

.. math:: \\Delta y_k = s\\, B_{t_k} A_{t_k}\\, x_k

Samples of different tasks can share a batch: pass ``task_ids`` of shape ``(B,)`` (or one int for
the whole batch) as ``model(x, task_ids=...)`` or inside ``model.condition(task_ids=...)``.
Merging folds one task's delta: it needs a single task id in the condition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from braingate.lora.functional import lowrank_apply
from braingate.lora.variants.base import LoRAVariant
from braingate.lora.variants.registry import VariantConfig, register_variant

__all__ = ["ConditionalLoRA", "ConditionalLoRAConfig", "task_ids_of"]


@dataclass(frozen=True)
class ConditionalLoRAConfig(VariantConfig):
    """Number of tasks (one factor pair each)."""

    name = "conditional"
    num_tasks: int = 2

    def __post_init__(self) -> None:
        if (
            isinstance(self.num_tasks, bool)
            or not isinstance(self.num_tasks, int)
            or self.num_tasks < 1
        ):
            raise ValueError(f"num_tasks={self.num_tasks!r} must be a positive int")


def task_ids_of(adapter, num_tasks: int) -> Tensor:
    """The condition's task ids as a LongTensor (0-d for one task, ``(B,)`` per sample)."""
    if "task_ids" not in adapter.condition:
        raise ValueError(
            "ConditionalLoRA needs task ids: call model(x, task_ids=ids) or use "
            "model.condition(task_ids=ids)"
        )
    ids = torch.as_tensor(adapter.condition["task_ids"], dtype=torch.long)
    if ids.numel() and (ids.min() < 0 or ids.max() >= num_tasks):
        raise ValueError(f"task_ids={ids.tolist()} out of range [0, {num_tasks})")
    return ids


@register_variant(ConditionalLoRAConfig)
class ConditionalLoRA(LoRAVariant):
    """Per-task factor pairs selected per sample (linear layers)."""

    kinds = frozenset({"linear"})
    has_factors = False

    def build(self, adapter, base_weight) -> None:
        w = base_weight()
        t, r = self.config.num_tasks, adapter.rank
        n, m = adapter.kind.in_features, adapter.kind.out_features
        a = torch.empty(t, r, n, device=w.device, dtype=w.dtype)
        for i in range(t):
            nn.init.kaiming_uniform_(a[i], a=math.sqrt(5))
        b = torch.zeros(t, m, r, device=w.device, dtype=w.dtype)
        if adapter.init_mode is False:
            nn.init.normal_(b, std=0.1)
        adapter.task_A = nn.Parameter(a)
        adapter.task_B = nn.Parameter(b)

    def _ids(self, adapter) -> Tensor:
        return task_ids_of(adapter, self.config.num_tasks).to(adapter.task_A.device)

    def forward(self, adapter, x: Tensor, base_weight) -> Tensor:
        ids = self._ids(adapter)
        if ids.dim() == 1 and ids.numel() == 1 and x.dim() >= 1 and x.shape[0] != 1:
            ids = ids[0]
        return (
            lowrank_apply(adapter.dropout(x), adapter.task_A[ids], adapter.task_B[ids])
            * adapter.scaling
        )

    def check_mergeable(self, adapter) -> None:
        if self._ids(adapter).numel() != 1:
            raise ValueError("merging ConditionalLoRA needs a single task id in the condition")

    def delta_weight(self, adapter, base_weight: Tensor) -> Tensor:
        t = int(self._ids(adapter).reshape(-1)[0])
        return adapter.task_B[t] @ adapter.task_A[t] * adapter.scaling
