"""LoRA variants as strategy objects, one registry (see :mod:`.registry` and :mod:`.base`)."""

from braingate.lora.variants.adalora import AdaLoRA, AdaLoRAConfig, adalora_budget
from braingate.lora.variants.attention import AttentionGuidedLoRA, AttentionGuidedLoRAConfig
from braingate.lora.variants.base import LoRAVariant, PlainLoRA
from braingate.lora.variants.conditional import ConditionalLoRA, ConditionalLoRAConfig
from braingate.lora.variants.dora import DoRA, DoRAConfig
from braingate.lora.variants.event import EventLoRA, EventLoRAConfig
from braingate.lora.variants.hyper import HyperLoRA, HyperLoRAConfig
from braingate.lora.variants.pruning import (
    PruningAwareLoRA,
    PruningAwareLoRAConfig,
    pruning_schedule,
)
from braingate.lora.variants.qlora import QLoRA, QLoRAConfig
from braingate.lora.variants.registry import (
    VariantConfig,
    get_variant,
    register_variant,
    variants,
)
from braingate.lora.variants.sparse import SparseLoRA, SparseLoRAConfig

__all__ = [
    "AdaLoRA",
    "AdaLoRAConfig",
    "AttentionGuidedLoRA",
    "AttentionGuidedLoRAConfig",
    "ConditionalLoRA",
    "ConditionalLoRAConfig",
    "DoRA",
    "DoRAConfig",
    "EventLoRA",
    "EventLoRAConfig",
    "HyperLoRA",
    "HyperLoRAConfig",
    "LoRAVariant",
    "PlainLoRA",
    "PruningAwareLoRA",
    "PruningAwareLoRAConfig",
    "QLoRA",
    "QLoRAConfig",
    "SparseLoRA",
    "SparseLoRAConfig",
    "VariantConfig",
    "adalora_budget",
    "get_variant",
    "pruning_schedule",
    "register_variant",
    "variants",
]
