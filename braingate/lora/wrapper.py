"""LoRAWrapper: the shared machinery of every wrapped layer (adapters, merge, enable/disable).

A wrapper owns ``base_layer`` (frozen, never copied) and ``lora_adapters[name][slot]``
(:class:`~braingate.lora.adapter.Adapter`), where a slot is a weight of the base layer
(``"weight"``; RNN cells have ``"weight_ih"`` and ``"weight_hh"``). Subclasses give the slot kinds
and the forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from braingate.lora.adapter import Adapter
from braingate.lora.config import LoRAConfig
from braingate.lora.kinds import Kind
from braingate.lora.quant import Linear4bit
from braingate.lora.variants.registry import make_strategy

__all__ = ["AdapterView", "LoRAWrapper"]


class AdapterView(dict):
    """``{adapter name: module}`` that also acts as the active adapter's module.

    ``view["default"]`` is PEFT's indexing; ``view.weight`` and ``view(x)`` reach the first active
    adapter's module, so a single-adapter layer exposes ``lora_A`` like an ``nn.Linear``.
    """

    def __init__(self, items: dict[str, Any], active: str | None):
        super().__init__(items)
        self._active = active

    def _module(self) -> Any:
        if self._active is None:
            raise AttributeError("no active adapter on this layer")
        return self[self._active]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._module(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._module()(*args, **kwargs)


class LoRAWrapper(nn.Module):
    """Base class of LoRA-wrapped layers (PEFT's ``LoraLayer``)."""

    slots: ClassVar[tuple[str, ...]] = ("weight",)
    base_types: ClassVar[tuple[type[nn.Module], ...]] = ()

    def _init_wrapper(self, base_layer: nn.Module) -> None:
        if not isinstance(base_layer, self.base_types):
            names = ", ".join(t.__name__ for t in self.base_types)
            raise TypeError(f"{type(self).__name__} wraps {names}, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        for p in base_layer.parameters():
            p.requires_grad_(False)
        self.lora_adapters = nn.ModuleDict()
        self.active_adapters: list[str] = []
        self.merged_adapters: list[str] = []
        self.disabled = False

    @classmethod
    def from_module(
        cls,
        base_layer: nn.Module,
        config: LoRAConfig | dict | None = None,
        adapter_name: str = "default",
        *,
        rank: int | None = None,
        alpha: float | None = None,
    ) -> LoRAWrapper:
        """Wrap an existing layer (it is not copied) with one adapter."""
        config = LoRAConfig.coerce(config)
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        base_layer = make_strategy(config.variant).prepare_base(base_layer)
        self._init_wrapper(base_layer)
        self.add_adapter(adapter_name, config, rank=rank, alpha=alpha)
        return self

    # --- subclass interface ------------------------------------------------------------
    def kind(self, slot: str) -> Kind:
        """The layer kind of ``slot``."""
        raise NotImplementedError

    def slot_weight(self, slot: str) -> Tensor:
        """The current base weight of ``slot`` (dequantised for a 4-bit base)."""
        return getattr(self.base_layer, slot)

    def _set_slot_weight(self, slot: str, w: Tensor) -> None:
        if isinstance(self.base_layer, Linear4bit):
            self.base_layer.requantize(w)
        else:
            with torch.no_grad():
                getattr(self.base_layer, slot).copy_(w)

    # --- adapters ----------------------------------------------------------------------
    def add_adapter(
        self, name: str, config: LoRAConfig, *, rank: int | None = None, alpha: float | None = None
    ) -> None:
        """Add adapter ``name`` on every slot and make it active."""
        if name in self.lora_adapters:
            raise ValueError(f"adapter {name!r} already exists; pick another name")
        strategy = make_strategy(config.variant)
        for slot in self.slots:
            strategy.check_kind(self.kind(slot).name, type(self.base_layer).__name__)
        strategy.check_base(self.base_layer, type(self.base_layer).__name__)
        slots = nn.ModuleDict()
        for slot in self.slots:
            slots[slot] = Adapter(
                self.kind(slot),
                make_strategy(config.variant),
                config.rank if rank is None else rank,
                config.alpha if alpha is None else alpha,
                config.dropout,
                config.use_rslora,
                config.init_lora_weights,
                lambda s=slot: self.slot_weight(s),
            )
        self.lora_adapters[name] = slots
        self.active_adapters = [*self.active_adapters, name]

    def delete_adapter(self, name: str) -> None:
        """Remove an (unmerged) adapter."""
        self._check_names([name])
        if name in self.merged_adapters:
            raise ValueError(f"adapter {name!r} is merged; call unmerge() before deleting it")
        del self.lora_adapters[name]
        self.active_adapters = [a for a in self.active_adapters if a != name]

    def set_adapter(self, names: str | Sequence[str]) -> None:
        """Make ``names`` the active adapters (others stay but are skipped)."""
        names = [names] if isinstance(names, str) else list(names)
        self._check_names(names)
        self.active_adapters = names

    def _check_names(self, names: Sequence[str]) -> None:
        for n in names:
            if n not in self.lora_adapters:
                raise ValueError(f"unknown adapter {n!r}; known: {list(self.lora_adapters)}")

    def adapters_for(self, slot: str) -> Iterator[Adapter]:
        """Active, unmerged adapters on ``slot`` (none when disabled)."""
        if self.disabled:
            return
        for name in self.active_adapters:
            if name not in self.merged_adapters:
                yield self.lora_adapters[name][slot]

    def slot_delta(self, slot: str, x: Tensor) -> Tensor | None:
        """Sum of the active adapters' outputs on ``slot`` for input ``x`` (None: no adapter)."""
        out = None
        for adapter in self.adapters_for(slot):
            d = adapter(x, lambda s=slot: self.slot_weight(s))
            out = d if out is None else out + d
        return out

    @contextlib.contextmanager
    def condition(self, **values: Any) -> Iterator[None]:
        """Set per-call conditioning (``task_ids``, ``task_embedding``) for this layer."""
        adapters = [a for slots in self.lora_adapters.values() for a in slots.values()]
        old = [a.condition for a in adapters]
        for a in adapters:
            a.condition = {**a.condition, **values}
        try:
            yield
        finally:
            for a, c in zip(adapters, old):
                a.condition = c

    # --- merge -------------------------------------------------------------------------
    @property
    def merged(self) -> bool:
        """Whether any adapter is merged into the base weight."""
        return bool(self.merged_adapters)

    def get_delta_weight(self, name: str, slot: str = "weight") -> Tensor:
        """``ΔW`` of adapter ``name`` on ``slot``."""
        self._check_names([name])
        return self.lora_adapters[name][slot].delta_weight(self.slot_weight(slot))

    def plan_merge(self, names: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Merged weights per slot for ``names`` (default: active, unmerged), not yet applied."""
        names = self._merge_names(names)
        weights = {s: self.slot_weight(s).detach().clone() for s in self.slots}
        for name in names:
            for slot, adapter in self.lora_adapters[name].items():
                adapter.strategy.check_mergeable(adapter)
                with torch.no_grad():
                    weights[slot] = adapter.strategy.merge(adapter, weights[slot])
        return weights

    def _merge_names(self, names: Sequence[str] | None) -> list[str]:
        if names is None:
            names = self.active_adapters
        self._check_names(names)
        return [n for n in names if n not in self.merged_adapters]

    def merge(self, safe_merge: bool = False, adapter_names: Sequence[str] | None = None) -> None:
        """Fold adapters into the base weight (``safe_merge`` checks for non-finite values)."""
        names = self._merge_names(adapter_names)
        if not names:
            return
        plan = self.plan_merge(names)
        if safe_merge:
            for slot, w in plan.items():
                if not torch.isfinite(w).all():
                    raise ValueError(
                        f"merging adapters {names} into {slot} gives non-finite values; the "
                        "adapter weights are broken (NaN/inf): nothing was merged"
                    )
        self.commit_merge(plan, names)

    def commit_merge(self, plan: dict[str, Tensor], names: Sequence[str]) -> None:
        """Apply a plan from :meth:`plan_merge`."""
        for slot, w in plan.items():
            self._set_slot_weight(slot, w)
        self.merged_adapters.extend(n for n in names if n not in self.merged_adapters)

    def unmerge(self) -> None:
        """Subtract merged adapters, in reverse order of merging."""
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            for slot, adapter in self.lora_adapters[name].items():
                with torch.no_grad():
                    w = adapter.strategy.unmerge(adapter, self.slot_weight(slot).detach().clone())
                self._set_slot_weight(slot, w)

    # --- PEFT-like views (adapter name -> module) ---------------------------------------
    def _view(self, attr: str, slot: str | None = None) -> AdapterView:
        slot = slot or self.slots[0]
        items = {
            n: getattr(s[slot], attr)
            for n, s in self.lora_adapters.items()
            if hasattr(s[slot], attr)
        }
        active = next((n for n in self.active_adapters if n in items), None)
        return AdapterView(items, active)

    @property
    def lora_A(self) -> AdapterView:
        """A modules: ``layer.lora_A["name"]`` (PEFT) or ``layer.lora_A.weight`` (active one)."""
        return self._view("lora_A")

    @property
    def lora_B(self) -> AdapterView:
        """B modules, as :attr:`lora_A`."""
        return self._view("lora_B")

    @property
    def scaling(self) -> dict[str, float]:
        """``{adapter name: scaling}``."""
        return dict(self._view("scaling"))

    @property
    def r(self) -> dict[str, int]:
        """``{adapter name: rank}``."""
        return dict(self._view("rank"))

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base_layer", "lora_adapters"):
                raise
            return getattr(self.base_layer, name)
