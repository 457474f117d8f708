"""Target-module matching (PEFT's rules) and the table of wrappable layer types.

- a string is a full-match regex over the module's dotted name;
- a list matches a name equal to an entry or ending with ``"." + entry``;
- None matches every layer of a supported type.

``rank_pattern`` / ``alpha_pattern`` keys match as ``re.match(rf"(.*\\.)?({key})$", name)``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence

from torch import nn

from braingate.lora.layers import LoRAConv2d, LoRAEmbedding, LoRALinear
from braingate.lora.quant import Linear4bit
from braingate.lora.rnn import LoRAGRUCell, LoRALSTMCell, LoRARNNCell
from braingate.lora.wrapper import LoRAWrapper

__all__ = ["WRAPPERS", "iter_modules", "match_pattern", "match_target", "wrapper_for"]

# base layer type -> wrapper class (exact types first; subclasses of nn.Linear also match)
WRAPPERS: dict[type[nn.Module], type[LoRAWrapper]] = {
    nn.Linear: LoRALinear,
    Linear4bit: LoRALinear,
    nn.Conv2d: LoRAConv2d,
    nn.Embedding: LoRAEmbedding,
    nn.RNNCell: LoRARNNCell,
    nn.LSTMCell: LoRALSTMCell,
    nn.GRUCell: LoRAGRUCell,
}


def wrapper_for(module: nn.Module) -> type[LoRAWrapper] | None:
    """The wrapper class for ``module``'s type, or None if it is not supported."""
    for base_type, wrapper in WRAPPERS.items():
        if isinstance(module, base_type):
            return wrapper
    return None


def match_target(name: str, targets: str | Sequence[str] | None) -> bool:
    """Whether module ``name`` is selected by ``targets`` (see module docstring)."""
    if targets is None:
        return True
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def match_pattern(name: str, pattern: Mapping[str, object]) -> object | None:
    """The value of the first ``rank_pattern``-style key matching ``name`` (None: none)."""
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return None


def iter_modules(
    module: nn.Module, stop: tuple[type, ...], prefix: str = ""
) -> Iterator[tuple[str, nn.Module, nn.Module, str]]:
    """``(full name, module, parent, attribute)`` depth-first, not entering ``stop`` types."""
    for child_name, child in module.named_children():
        full = f"{prefix}.{child_name}" if prefix else child_name
        yield full, child, module, child_name
        if not isinstance(child, stop):
            yield from iter_modules(child, stop, full)
