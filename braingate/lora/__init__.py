"""braingate.lora: LoRA adapters PEFT users feel at home with, plus variants PEFT lacks.

- :class:`LoRAConfig`, :class:`LoRAModel` (PEFT-style target matching, merge / unmerge /
  merge_and_unload, named adapters, ``set_adapter``, ``disable_adapter()``),
  :class:`LoRAOptimizer` (LoRA+ ratio; runs the variants' periodic steps),
  :func:`apply_lora_to_model`.
- Wrappers: :class:`LoRALinear`, :class:`LoRAConv2d`, :class:`LoRAEmbedding`,
  :class:`LoRARNNCell`, :class:`LoRALSTMCell`, :class:`LoRAGRUCell`; the seed's
  :class:`LoRALayer` and variant layers (:mod:`braingate.lora.seed` lists the deliberate
  differences from the seed documents).
- Variants through one registry (:func:`variants`): ``lora``, ``dora``, ``adalora``, ``qlora``,
  ``hyper``, ``conditional``, ``sparse``, ``pruning``, ``attention``, ``event`` (delta path through EventLinear).
- Files: :func:`save_adapter` / :func:`load_adapter` in PEFT's format (``peft`` not needed).
- :mod:`braingate.lora.quant`: NF4 quantisation in pure torch.
"""

from braingate.lora.adapter import Adapter
from braingate.lora.config import LoRAConfig
from braingate.lora.io import adapter_state_dict, load_adapter, read_config, save_adapter
from braingate.lora.layers import LoRAConv2d, LoRAEmbedding, LoRALinear
from braingate.lora.model import LoRAModel, ModulesToSave
from braingate.lora.optim import LoRAOptimizer, apply_lora_to_model
from braingate.lora.quant import NF4_CODE, Linear4bit, NF4Tensor, quantize_nf4
from braingate.lora.rnn import LoRAGRUCell, LoRALSTMCell, LoRARNNCell
from braingate.lora.seed import (
    AdaLoRALayer,
    AttentionGuidedLoRALayer,
    ConditionalLoRALayer,
    ConditionalLoRALinear,
    HyperLoRALayer,
    LoRALayer,
    PruningAwareLoRALayer,
    QLoRALinear,
    SparseLoRALayer,
)
from braingate.lora.variants import (
    AdaLoRAConfig,
    AttentionGuidedLoRAConfig,
    ConditionalLoRAConfig,
    DoRAConfig,
    EventLoRAConfig,
    HyperLoRAConfig,
    LoRAVariant,
    PruningAwareLoRAConfig,
    QLoRAConfig,
    SparseLoRAConfig,
    VariantConfig,
    get_variant,
    register_variant,
    variants,
)
from braingate.lora.wrapper import LoRAWrapper

__all__ = [
    "NF4_CODE",
    "AdaLoRAConfig",
    "AdaLoRALayer",
    "Adapter",
    "AttentionGuidedLoRAConfig",
    "AttentionGuidedLoRALayer",
    "ConditionalLoRAConfig",
    "ConditionalLoRALayer",
    "ConditionalLoRALinear",
    "DoRAConfig",
    "EventLoRAConfig",
    "HyperLoRAConfig",
    "HyperLoRALayer",
    "Linear4bit",
    "LoRAConfig",
    "LoRAConv2d",
    "LoRAEmbedding",
    "LoRAGRUCell",
    "LoRALSTMCell",
    "LoRALayer",
    "LoRALinear",
    "LoRAModel",
    "LoRAOptimizer",
    "LoRARNNCell",
    "LoRAVariant",
    "LoRAWrapper",
    "ModulesToSave",
    "NF4Tensor",
    "PruningAwareLoRAConfig",
    "PruningAwareLoRALayer",
    "QLoRAConfig",
    "QLoRALinear",
    "SparseLoRAConfig",
    "SparseLoRALayer",
    "VariantConfig",
    "adapter_state_dict",
    "apply_lora_to_model",
    "get_variant",
    "load_adapter",
    "quantize_nf4",
    "read_config",
    "register_variant",
    "save_adapter",
    "variants",
]
