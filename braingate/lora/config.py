"""LoRAConfig: what to adapt and how (PEFT's LoraConfig, braingate names).

PEFT spellings are accepted as read-only aliases (``r``, ``lora_alpha``, ``lora_dropout``) so code
written against PEFT's config reads the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from braingate.lora.variants.registry import VariantConfig, resolve_variant_config

__all__ = ["LoRAConfig"]


def _check_rank(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int; pass e.g. {name}=8")


def _check_alpha(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name}={value!r} must be a positive number; pass e.g. {name}=8")


@dataclass
class LoRAConfig:
    """Configuration of one LoRA adapter.

    The adapted weight is :math:`W = W_0 + \\frac{\\alpha}{r} B A` (rsLoRA: :math:`\\alpha/\\sqrt r`),
    with :math:`A \\in R^{r×n}` Kaiming-uniform and :math:`B \\in R^{m×r}` zero at init.

    Args:
        rank: r, the rank of the update (PEFT ``r``; default 8).
        alpha: α in the scaling α/r (PEFT ``lora_alpha``; default 8).
        dropout: dropout on the LoRA branch input only (PEFT ``lora_dropout``).
        target_modules: a string is a full-match regex over module names; a list matches names
            equal to an entry or ending with ``"." + entry``; None adapts every supported layer
            (``nn.Linear``, ``nn.Conv2d``, ``nn.Embedding``, ``nn.RNNCell``/``LSTMCell``/``GRUCell``).
        use_rslora: scale by α/√r instead of α/r (Kalajdzievski 2023).
        modules_to_save: modules (suffix match) trained in full and saved with the adapter.
        variant: None (plain LoRA), a registered name (``"dora"``, ``"adalora"``, ...) or a
            variant config object such as ``AdaLoRAConfig(total_step=1000)``.
        init_lora_weights: True (PEFT default init), ``"gaussian"`` (A ~ N(0, 1/r)) or False
            (A and B random: for tests of merge arithmetic only).
        rank_pattern / alpha_pattern: per-module overrides, keys matched like PEFT
            (``re.match(rf"(.*\\.)?({key})$", name)``).
        bias: only ``"none"`` is supported (the base bias stays frozen).
    """

    rank: int = 8
    alpha: float = 8
    dropout: float = 0.0
    target_modules: str | Sequence[str] | None = None
    use_rslora: bool = False
    modules_to_save: Sequence[str] | None = None
    variant: str | VariantConfig | None = None
    init_lora_weights: bool | str = True
    rank_pattern: Mapping[str, int] = field(default_factory=dict)
    alpha_pattern: Mapping[str, float] = field(default_factory=dict)
    bias: str = "none"

    def __post_init__(self) -> None:
        _check_rank("rank", self.rank)
        _check_alpha("alpha", self.alpha)
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise TypeError(f"dropout={self.dropout!r} must be a float in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1); pass e.g. dropout=0.05")
        if self.target_modules is not None and not isinstance(self.target_modules, str):
            if not isinstance(self.target_modules, Sequence) or not all(
                isinstance(t, str) for t in self.target_modules
            ):
                raise TypeError(
                    f"target_modules={self.target_modules!r} must be a regex string, a list of "
                    "module-name suffixes, or None"
                )
            if len(self.target_modules) == 0:
                raise ValueError("target_modules=[] matches nothing; pass names or None for all")
            self.target_modules = list(self.target_modules)
        if self.modules_to_save is not None:
            if isinstance(self.modules_to_save, str) or not all(
                isinstance(t, str) for t in self.modules_to_save
            ):
                raise TypeError(
                    f"modules_to_save={self.modules_to_save!r} must be a list of module names"
                )
            self.modules_to_save = list(self.modules_to_save)
        if not isinstance(self.use_rslora, bool):
            raise TypeError(f"use_rslora={self.use_rslora!r} must be a bool")
        if self.init_lora_weights not in (True, False, "gaussian"):
            raise ValueError(
                f"init_lora_weights={self.init_lora_weights!r} must be True, False or 'gaussian'"
            )
        for key, value in dict(self.rank_pattern).items():
            _check_rank(f"rank_pattern[{key!r}]", value)
        for key, value in dict(self.alpha_pattern).items():
            _check_alpha(f"alpha_pattern[{key!r}]", value)
        if self.bias != "none":
            raise ValueError(
                f"bias={self.bias!r} is not supported; pass bias='none' (base biases stay frozen)"
            )
        self.variant = resolve_variant_config(self.variant)

    # PEFT spellings, read-only.
    @property
    def r(self) -> int:
        """PEFT's name for :attr:`rank`."""
        return self.rank

    @property
    def lora_alpha(self) -> float:
        """PEFT's name for :attr:`alpha`."""
        return self.alpha

    @property
    def lora_dropout(self) -> float:
        """PEFT's name for :attr:`dropout`."""
        return self.dropout

    @property
    def variant_name(self) -> str:
        """Registered name of the variant (``"lora"`` for plain LoRA)."""
        return self.variant.name

    def scaling(self, rank: int | None = None, alpha: float | None = None) -> float:
        """The factor multiplying ``B A``: α/r, or α/√r with rsLoRA."""
        r = self.rank if rank is None else rank
        a = self.alpha if alpha is None else alpha
        return a / (r**0.5) if self.use_rslora else a / r

    @classmethod
    def coerce(cls, config: LoRAConfig | Mapping[str, Any] | None) -> LoRAConfig:
        """Accept a LoRAConfig, a dict of its fields (the seed's style) or None (defaults)."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if isinstance(config, Mapping):
            return cls(**dict(config))
        raise TypeError(f"lora_config must be a LoRAConfig or a dict, got {type(config).__name__}")


def sized_config(
    rank: int,
    alpha: float | None,
    dropout: float = 0.0,
    variant: str | VariantConfig | None = None,
    use_rslora: bool = False,
) -> LoRAConfig:
    """The config a wrapper built from sizes (``LoRALinear(768, 768, rank=4)``) gives its adapter.

    Unlike :class:`LoRAConfig`, whose α defaults to 8, α defaults to ``rank`` here, so the
    scaling :math:`\\alpha / r` is 1 unless ``alpha`` is given.
    """
    return LoRAConfig(
        rank=rank,
        alpha=rank if alpha is None else alpha,
        dropout=dropout,
        variant=variant,
        use_rslora=use_rslora,
    )
