"""LoRA wrappers for ``nn.Linear``, ``nn.Conv2d`` and ``nn.Embedding``.

Each class can be built two ways: from sizes, as in the seed documents
(``LoRALinear(768, 768, rank=4)`` builds a fresh frozen ``nn.Linear``), or around an existing layer
with ``LoRALinear.from_module(linear, config)`` (what :class:`~braingate.lora.model.LoRAModel`
does; the layer is wrapped, not copied).

.. math::
    y = \\mathrm{base}(x) + \\sum_{a\\ \\text{active}} s_a\\, B_a A_a\\, \\mathrm{dropout}(x)
"""

from __future__ import annotations

from torch import Tensor, nn

from braingate.lora.config import LoRAConfig, sized_config
from braingate.lora.kinds import ConvKind, EmbeddingKind, Kind, LinearKind
from braingate.lora.quant import Linear4bit
from braingate.lora.variants.registry import VariantConfig, make_strategy
from braingate.lora.wrapper import LoRAWrapper

__all__ = ["LoRAConv2d", "LoRAEmbedding", "LoRALinear"]


class _SingleSlot(LoRAWrapper):
    def _build(self, base: nn.Module, config: LoRAConfig) -> None:
        base = make_strategy(config.variant).prepare_base(base)
        self._init_wrapper(base)
        self.add_adapter("default", config)

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        """``base(x) + Σ adapters(x)``."""
        out = self.base_layer(x, *args, **kwargs)
        delta = self.slot_delta("weight", x)
        return out if delta is None else out + delta.to(out.dtype)


class LoRALinear(_SingleSlot):
    """``nn.Linear`` with LoRA adapters.

    Args:
        in_features, out_features: sizes of the fresh frozen ``nn.Linear``.
        rank: r (default 8). alpha: α (default: r, i.e. scaling 1).
        dropout: adapter-input dropout. bias: base bias. variant: variant name or config.

    Shape: ``(*, in_features) -> (*, out_features)``.
    """

    base_types = (nn.Linear, Linear4bit)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int = 8,
        alpha: float | None = None,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        variant: str | VariantConfig | None = None,
        use_rslora: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        base = nn.Linear(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self._build(base, sized_config(rank, alpha, dropout, variant, use_rslora))

    def kind(self, slot: str) -> Kind:
        return LinearKind(self.base_layer.in_features, self.base_layer.out_features)


class LoRAConv2d(_SingleSlot):
    """``nn.Conv2d`` with LoRA adapters (PEFT's scheme: A a conv with the base kernel, B 1×1).

    Shape: ``(B, C_in, H, W) -> (B, C_out, H', W')``.
    """

    base_types = (nn.Conv2d,)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        rank: int = 8,
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        alpha: float | None = None,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        variant: str | VariantConfig | None = None,
        use_rslora: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        base = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, bias=bias, device=device,
            dtype=dtype,
        )  # fmt: skip
        self._build(base, sized_config(rank, alpha, dropout, variant, use_rslora))

    def kind(self, slot: str) -> Kind:
        return ConvKind(self.base_layer)


class LoRAEmbedding(_SingleSlot):
    """``nn.Embedding`` with LoRA adapters (A zeros, B normal, as PEFT and loralib).

    Shape: ``(*) long -> (*, embedding_dim)``.
    """

    base_types = (nn.Embedding,)

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        rank: int = 8,
        alpha: float | None = None,
        *,
        variant: str | VariantConfig | None = None,
        use_rslora: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        base = nn.Embedding(num_embeddings, embedding_dim, device=device, dtype=dtype)
        self._build(base, sized_config(rank, alpha, 0.0, variant, use_rslora))

    def kind(self, slot: str) -> Kind:
        return EmbeddingKind(self.base_layer)
