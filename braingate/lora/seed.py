"""The seed documents' layer names, built on the toolkit (import them from ``braingate.lora``).

Deliberate differences from the seed documents (the design and PEFT win, see seeds/README.md):

- Every ``*Layer`` here is a whole layer, frozen base plus adapter
  (``y = W_0 x + b + s·B A x``), as seed 004's ``LoRALayer`` (with ``merge_weights`` and
  ``merge_lora_weights()``) requires. Seed 002's ``LoRALayer`` returned only the low-rank delta
  and its ``LoRALinear`` added a separate base; both names exist here and mean the same layer.
- Initialisation and scaling follow PEFT: A Kaiming-uniform, B zero, scaling ``alpha / rank``
  (alpha defaults to rank), not ``A ~ N(0, 1)`` with a fixed ``scale = 0.01``.
- ``lora_A`` / ``lora_B`` are modules with ``.weight`` in PEFT's layout (``(r, in)``,
  ``(out, r)``), not raw ``(in, r)`` / ``(r, out)`` parameters. ``torch.count_nonzero(layer.lora_A)``
  becomes ``torch.count_nonzero(layer.lora_A.weight)``.
- ``LoRARNNCell`` adds its adapters to the gate pre-activations (mergeable), instead of adding
  them after the cell and applying ``tanh`` a second time.
- ``QLoRALinear`` stores its base in NF4 with pure torch (no bitsandbytes); ``bits`` must be 4.
- ``AdaLoRALayer`` keeps AdaLoRA's SVD triplets; ``importance`` is the triplet score of the
  published method (sensitivity × uncertainty, zero before training) instead of a free
  parameter, and ``update_rank(threshold)`` keeps the triplets scoring above the threshold,
  clipped to ``[min_rank, max_rank]``.
- ``AttentionGuidedLoRALayer`` scales its softmax by the rank (mean weight 1, see the variant).
"""

from __future__ import annotations

import torch
from torch import Tensor

from braingate.lora.layers import LoRALinear
from braingate.lora.variants.adalora import AdaLoRAConfig
from braingate.lora.variants.attention import AttentionGuidedLoRAConfig
from braingate.lora.variants.conditional import ConditionalLoRAConfig
from braingate.lora.variants.hyper import HyperLoRAConfig
from braingate.lora.variants.pruning import PruningAwareLoRAConfig
from braingate.lora.variants.qlora import QLoRAConfig
from braingate.lora.variants.sparse import SparseLoRAConfig

__all__ = [
    "AdaLoRALayer",
    "AttentionGuidedLoRALayer",
    "ConditionalLoRALayer",
    "ConditionalLoRALinear",
    "HyperLoRALayer",
    "LoRALayer",
    "PruningAwareLoRALayer",
    "QLoRALinear",
    "SparseLoRALayer",
]


class LoRALayer(LoRALinear):
    """The seed's standalone LoRA layer: a frozen linear map plus a trainable low-rank update.

    .. math:: y = W_0 x + b + \\frac{\\alpha}{r} B A x

    Args:
        in_features, out_features: sizes.
        rank: r (default 8). alpha: α (default r).
        merge_weights: merge automatically in ``eval()`` and unmerge in ``train()`` (loralib).

    Shape: ``(*, in_features) -> (*, out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int = 8,
        alpha: float | None = None,
        merge_weights: bool = False,
        **kwargs,
    ):
        super().__init__(in_features, out_features, rank, alpha, **kwargs)
        self.merge_weights = bool(merge_weights)

    @property
    def rank(self) -> int:
        """r of the default adapter."""
        return self.lora_adapters["default"]["weight"].rank

    @property
    def alpha(self) -> float:
        """α of the default adapter."""
        return self.lora_adapters["default"]["weight"].alpha

    def merge_lora_weights(self) -> None:
        """Fold ``s·BA`` into the base weight."""
        self.merge(safe_merge=True)

    def unmerge_lora_weights(self) -> None:
        """Subtract ``s·BA`` from the base weight."""
        self.unmerge()

    def train(self, mode: bool = True) -> LoRALayer:
        super().train(mode)
        if getattr(self, "merge_weights", False):
            if mode:
                self.unmerge()
            else:
                self.merge()
        return self


class _Named(LoRALinear):
    def _adapter(self):
        return self.lora_adapters["default"]["weight"]


class AdaLoRALayer(_Named):
    """Seed name for a linear layer with an AdaLoRA adapter (``init_r = max_rank``)."""

    def __init__(
        self, in_features: int, out_features: int, max_rank: int = 16, min_rank: int = 4, **kw
    ):
        cfg = AdaLoRAConfig(target_r=min_rank, init_r=max_rank, **kw)
        super().__init__(in_features, out_features, max_rank, variant=cfg)
        self.max_rank, self.min_rank = max_rank, min_rank

    @property
    def current_rank(self) -> int:
        """Number of unmasked triplets."""
        return int(self._adapter().rank_mask.sum())

    @property
    def importance(self) -> Tensor:
        """Triplet importance scores (AdaLoRA's S_i)."""
        return self._adapter().strategy.triplet_scores(self._adapter())

    def update_rank(self, threshold: float) -> None:
        """Keep triplets scoring above ``threshold``, at least min_rank, at most max_rank."""
        ad = self._adapter()
        n = int((self.importance > threshold).sum())
        ad.strategy.mask_to_budget([ad], max(self.min_rank, min(n, self.max_rank)))


class QLoRALinear(_Named):
    """Seed name: LoRA over an NF4 base (``bits`` must be 4)."""

    def __init__(self, in_features: int, out_features: int, rank: int = 8, bits: int = 4, **kw):
        if bits != 4:
            raise ValueError(f"bits={bits!r}: only 4-bit NF4 is implemented; pass bits=4")
        kw.setdefault("bias", False)
        super().__init__(in_features, out_features, rank, variant=QLoRAConfig(), **kw)


class HyperLoRALayer(_Named):
    """Seed name: a linear layer whose adapter is generated from a task embedding."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int = 8,
        task_embedding_dim: int = 16,
        hidden: int = 64,
    ):
        cfg = HyperLoRAConfig(task_embedding_dim=task_embedding_dim, hidden=hidden)
        super().__init__(in_features, out_features, rank, variant=cfg)

    def forward(self, x: Tensor, task_embedding: Tensor) -> Tensor:
        """``W_0 x + b + s·B(e) A(e) x``."""
        with self.condition(task_embedding=task_embedding):
            return super().forward(x)


class ConditionalLoRALayer(_Named):
    """Seed name: per-task adapters selected per sample by ``task_id``."""

    def __init__(self, in_features: int, out_features: int, num_tasks: int, rank: int = 8):
        cfg = ConditionalLoRAConfig(num_tasks=num_tasks)
        super().__init__(in_features, out_features, rank, variant=cfg)

    def forward(self, x: Tensor, task_id: Tensor | int) -> Tensor:
        """``W_0 x + b + s·B_t A_t x`` with t per sample (or one for the batch)."""
        with self.condition(task_ids=task_id):
            return super().forward(x)


ConditionalLoRALinear = ConditionalLoRALayer


class SparseLoRALayer(_Named):
    """Seed name: LoRA with fixed random masks on A and B."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int = 8,
        sparsity: float = 0.5,
        seed: int | None = None,
    ):
        super().__init__(in_features, out_features, rank, variant=SparseLoRAConfig(sparsity, seed))

    @property
    def mask_A(self) -> Tensor:
        """Mask of A, shape ``(r, in)``."""
        return self._adapter().mask_A

    @property
    def mask_B(self) -> Tensor:
        """Mask of B, shape ``(out, r)``."""
        return self._adapter().mask_B

    def apply_sparsity(self, sparsity: float) -> None:
        """Draw new masks with ``sparsity`` zeros."""
        self._adapter().strategy.apply_sparsity(self._adapter(), sparsity)


class PruningAwareLoRALayer(_Named):
    """Seed name: LoRA whose entries are pruned by importance (``prune()`` prunes now)."""

    def __init__(
        self, in_features: int, out_features: int, rank: int = 8, prune_rate: float = 0.5, **kw
    ):
        cfg = PruningAwareLoRAConfig(target_sparsity=prune_rate, **kw)
        super().__init__(in_features, out_features, rank, variant=cfg)
        self.prune_rate = prune_rate

    @torch.no_grad()
    def prune(self) -> None:
        """Prune ``prune_rate`` of A's and B's entries by magnitude (monotone)."""
        self._adapter().strategy.prune_now(self._adapter(), self.prune_rate, importance="magnitude")


class AttentionGuidedLoRALayer(_Named):
    """Seed name: rank components weighted by an attention over the input."""

    def __init__(
        self, in_features: int, out_features: int, rank: int = 8, temperature: float = 1.0
    ):
        cfg = AttentionGuidedLoRAConfig(temperature=temperature)
        super().__init__(in_features, out_features, rank, variant=cfg)
