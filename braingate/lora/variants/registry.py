"""The one registry of LoRA variants: a config type maps to its strategy class.

A variant is a small frozen dataclass config (``name`` class attribute) plus a strategy class
(:class:`braingate.lora.variants.base.LoRAVariant`) registered with :func:`register_variant`.
Adding a variant is one file with both, imported from ``variants/__init__.py``, plus one row in
the contract test table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from braingate._registry import Registry

if TYPE_CHECKING:
    from braingate.lora.variants.base import LoRAVariant

__all__ = [
    "REGISTRY",
    "VariantConfig",
    "get_variant",
    "register_variant",
    "resolve_variant_config",
    "variants",
]


@dataclass(frozen=True)
class VariantConfig:
    """Base of every variant config; plain LoRA uses it directly (``name = "lora"``)."""

    name: ClassVar[str] = "lora"

    def to_dict(self) -> dict[str, Any]:
        """Fields as a JSON-ready dict (saved in ``adapter_config.json``)."""
        from dataclasses import asdict

        return asdict(self)


REGISTRY: Registry[tuple[type[VariantConfig], type[LoRAVariant]]] = Registry("LoRA variant")


def register_variant(config_cls: type[VariantConfig]):
    """Class decorator: register a strategy class as the handler of ``config_cls``.

    The variant's name is ``config_cls.name``; a name registered already raises ``ValueError``.
    """
    if not (isinstance(config_cls, type) and issubclass(config_cls, VariantConfig)):
        raise TypeError(f"config_cls={config_cls!r} is not a VariantConfig subclass")
    name = config_cls.name
    if not isinstance(name, str) or not name:
        raise ValueError(f"{config_cls.__name__}.name={name!r} must be a non-empty string")

    def deco(strategy_cls: type[LoRAVariant]) -> type[LoRAVariant]:
        REGISTRY.add(name, (config_cls, strategy_cls))
        strategy_cls.name = name
        return strategy_cls

    return deco


def variants() -> list[str]:
    """Registered variant names, sorted."""
    _load_builtin()
    return sorted(REGISTRY.names())


def get_variant(name: str) -> tuple[type[VariantConfig], type[LoRAVariant]]:
    """``(config class, strategy class)`` for a registered name; unknown names list the known."""
    _load_builtin()
    if name not in REGISTRY:  # worded as before ("known variants: ..."), which users match on
        raise ValueError(f"unknown LoRA variant {name!r}; known variants: {', '.join(variants())}")
    return REGISTRY.get(name)


def resolve_variant_config(variant: str | VariantConfig | None) -> VariantConfig:
    """Turn None / a name / a config object into a validated config object."""
    if variant is None:
        return VariantConfig()
    if isinstance(variant, str):
        cfg_cls, _ = get_variant(variant.lower())
        return cfg_cls()
    if isinstance(variant, VariantConfig):
        get_variant(variant.name)
        return variant
    raise TypeError(
        f"variant={variant!r} must be None, a variant name ({', '.join(variants())}) or a "
        "variant config such as DoRAConfig()"
    )


def make_strategy(config: VariantConfig) -> LoRAVariant:
    """The strategy object for a variant config."""
    _, strategy_cls = get_variant(config.name)
    return strategy_cls(config)


def _load_builtin() -> None:
    import braingate.lora.variants  # noqa: F401  (registers the built-in variants)
