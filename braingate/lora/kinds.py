"""Layer kinds: how a factor pair (A, B) acts for a linear, conv or embedding weight.

A kind knows the shapes of A and B, PEFT's initialisation for them, the adapter's output
``B(A(x))`` for given factor weights, the merged delta ``ΔW`` in the base weight's layout, the
bias-free base product ``W x`` and per-output norms (DoRA). Variants change the factor weights
(masks, singular values) and reuse the kind for everything layout-specific.

PEFT's schemes (REFERENCES.md §F):

- linear: ``A: Linear(n, r)``, ``B: Linear(r, m)``; ``ΔW = B·A``.
- conv: ``A`` a conv with the base kernel/stride/padding/dilation, ``B`` a 1×1 conv;
  ``ΔW[o, i, h, w] = Σ_k B[o, k] A[k, i, h, w]``.
- embedding: ``A ∈ R^{r×V}`` zeros, ``B ∈ R^{d×r}`` normal; ``ΔE = (B·A)ᵀ``; no dropout.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ConvKind", "EmbeddingKind", "Kind", "LinearKind"]


class Kind:
    """Interface of a layer kind (see module docstring)."""

    name = "linear"
    supports_dropout = True

    def __init__(self, in_features: int, out_features: int):
        self.in_features = in_features
        self.out_features = out_features

    def make_factors(self, rank: int, device=None, dtype=None) -> tuple[nn.Module, nn.Module]:
        """``(A, B)`` modules with ``.weight`` (PEFT layout)."""
        kw = {"device": device, "dtype": dtype, "bias": False}
        return nn.Linear(self.in_features, rank, **kw), nn.Linear(rank, self.out_features, **kw)

    def init_factors(self, a: nn.Module, b: nn.Module, mode: bool | str) -> None:
        """PEFT init: A Kaiming-uniform (a=√5), B zeros; ``"gaussian"``: A ~ N(0, 1/r)."""
        with torch.no_grad():
            if mode == "gaussian":
                nn.init.normal_(a.weight, std=1.0 / a.weight.shape[0])
            else:
                nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
            if mode is False:
                nn.init.kaiming_uniform_(b.weight, a=math.sqrt(5))
            else:
                nn.init.zeros_(b.weight)

    def apply(self, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
        """``B(A(x))`` (unscaled)."""
        return F.linear(F.linear(x, a), b)

    def delta_weight(self, a: Tensor, b: Tensor) -> Tensor:
        """``B·A`` in the base weight's layout (unscaled)."""
        return b @ a

    def base_apply(self, x: Tensor, w: Tensor) -> Tensor:
        """``W x`` without bias."""
        return F.linear(x, w)

    def row_norm(self, w: Tensor) -> Tensor:
        """Norm of each output unit's weights, shape ``(out,)``."""
        return w.norm(p=2, dim=1)

    def out_view(self, v: Tensor) -> Tensor:
        """Reshape a per-output vector to broadcast against :meth:`apply`'s output."""
        return v


class LinearKind(Kind):
    """``nn.Linear`` and the ``weight_ih`` / ``weight_hh`` of RNN cells."""


class ConvKind(Kind):
    """``nn.Conv2d`` (groups=1, zero padding), PEFT's conv scheme."""

    name = "conv"

    def __init__(self, conv: nn.Conv2d):
        super().__init__(conv.in_channels, conv.out_channels)
        if conv.groups != 1:
            raise ValueError(
                f"Conv2d groups={conv.groups} is not supported by LoRA here; target a conv "
                "with groups=1"
            )
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(
                f"Conv2d padding={conv.padding!r}, padding_mode={conv.padding_mode!r} is not "
                "supported; use numeric zero padding"
            )
        self.kernel_size = conv.kernel_size
        self.stride = conv.stride
        self.padding = conv.padding
        self.dilation = conv.dilation

    def make_factors(self, rank: int, device=None, dtype=None) -> tuple[nn.Module, nn.Module]:
        kw = {"device": device, "dtype": dtype, "bias": False}
        a = nn.Conv2d(
            self.in_features, rank, self.kernel_size, self.stride, self.padding, self.dilation, **kw
        )
        return a, nn.Conv2d(rank, self.out_features, 1, **kw)

    def apply(self, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
        z = F.conv2d(x, a, None, self.stride, self.padding, self.dilation)
        return F.conv2d(z, b)

    def delta_weight(self, a: Tensor, b: Tensor) -> Tensor:
        return torch.einsum("or,rihw->oihw", b[:, :, 0, 0], a)

    def base_apply(self, x: Tensor, w: Tensor) -> Tensor:
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation)

    def row_norm(self, w: Tensor) -> Tensor:
        return w.flatten(1).norm(p=2, dim=1)

    def out_view(self, v: Tensor) -> Tensor:
        return v.view(-1, 1, 1)


class EmbeddingKind(Kind):
    """``nn.Embedding``: A ``(r, V)`` zeros, B ``(d, r)`` normal (PEFT/loralib init)."""

    name = "embedding"
    supports_dropout = False

    def __init__(self, emb: nn.Embedding):
        super().__init__(emb.num_embeddings, emb.embedding_dim)
        self.padding_idx = emb.padding_idx

    def init_factors(self, a: nn.Module, b: nn.Module, mode: bool | str) -> None:
        with torch.no_grad():
            if mode is False:
                nn.init.normal_(a.weight)
            else:
                nn.init.zeros_(a.weight)
            nn.init.normal_(b.weight)

    def apply(self, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
        return F.linear(F.embedding(x, a.t(), self.padding_idx), b)

    def delta_weight(self, a: Tensor, b: Tensor) -> Tensor:
        return (b @ a).t()

    def base_apply(self, x: Tensor, w: Tensor) -> Tensor:
        return F.embedding(x, w, self.padding_idx)

    def row_norm(self, w: Tensor) -> Tensor:
        raise ValueError("DoRA on nn.Embedding is not supported; target Linear or Conv2d layers")
