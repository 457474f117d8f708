"""LoRAModel: inject adapters into a model by name, PEFT-style, and manage them.

``LoRAModel(base_model, lora_config, merge_weights=False)`` wraps every module matched by
``lora_config.target_modules`` (see :mod:`braingate.lora.targets`) in place, freezes everything
else, and keeps ``modules_to_save`` as trainable per-adapter copies (PEFT's
``ModulesToSaveWrapper``). ``merge_weights=True`` follows loralib: the adapters are merged while
the model is in ``eval()`` mode and unmerged in ``train()`` mode (the seed's "merge initially"
cannot mean more: a model merged during training gives its adapters no gradient).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from braingate.lora.adapter import Adapter
from braingate.lora.config import LoRAConfig
from braingate.lora.targets import iter_modules, match_pattern, match_target, wrapper_for
from braingate.lora.variants.registry import make_strategy
from braingate.lora.wrapper import LoRAWrapper

__all__ = ["LoRAModel", "ModulesToSave"]

_CONDITION_KEYS = ("task_ids", "task_embedding")


class ModulesToSave(nn.Module):
    """Keeps the original module frozen and a trainable copy per adapter (PEFT's wrapper)."""

    def __init__(self, module: nn.Module, adapter_name: str):
        super().__init__()
        self.original_module = module
        self.modules_to_save = nn.ModuleDict()
        self.active_adapter = adapter_name
        self.disabled = False
        self.add(adapter_name)

    def add(self, adapter_name: str) -> None:
        """Add a trainable copy for ``adapter_name``."""
        clone = copy.deepcopy(self.original_module)
        for p in clone.parameters():
            p.requires_grad_(True)
        self.modules_to_save[adapter_name] = clone

    def active_module(self) -> nn.Module:
        """The module used in forward."""
        if self.disabled or self.active_adapter not in self.modules_to_save:
            return self.original_module
        return self.modules_to_save[self.active_adapter]

    def forward(self, *args, **kwargs):
        """Forward through the active copy (the original when disabled)."""
        return self.active_module()(*args, **kwargs)


class LoRAModel(nn.Module):
    """A model with LoRA adapters injected into its target modules.

    Args:
        base_model: the model to adapt (modified in place: targets are wrapped).
        lora_config: a :class:`LoRAConfig` or a dict of its fields.
        merge_weights: merge in ``eval()`` mode and unmerge in ``train()`` mode (loralib).
        adapter_name: name of the first adapter.

    Raises:
        ValueError: when ``target_modules`` matches no supported layer (the message names the
            targets and lists module names), or a variant does not support a matched layer.
    """

    def __init__(
        self,
        base_model: nn.Module,
        lora_config: LoRAConfig | Mapping[str, Any] | None = None,
        merge_weights: bool = False,
        adapter_name: str = "default",
    ):
        super().__init__()
        if not isinstance(base_model, nn.Module):
            raise TypeError(f"base_model must be an nn.Module, got {type(base_model).__name__}")
        self.base_model = base_model
        self.peft_config: dict[str, LoRAConfig] = {}
        self.active_adapters: list[str] = []
        self.merge_weights = bool(merge_weights)
        self.lora_config = LoRAConfig.coerce(lora_config)
        for p in base_model.parameters():
            p.requires_grad_(False)
        self.add_adapter(adapter_name, self.lora_config)
        self.set_adapter(adapter_name)

    # --- structure ---------------------------------------------------------------------
    @property
    def lora_layers(self) -> dict[str, LoRAWrapper]:
        """``{module name: wrapped layer}`` (the seed's attribute)."""
        stop = (LoRAWrapper, ModulesToSave)
        return {
            n: m for n, m, _, _ in iter_modules(self.base_model, stop) if isinstance(m, LoRAWrapper)
        }

    def _saved_modules(self) -> dict[str, ModulesToSave]:
        stop = (LoRAWrapper, ModulesToSave)
        return {
            n: m
            for n, m, _, _ in iter_modules(self.base_model, stop)
            if isinstance(m, ModulesToSave)
        }

    @property
    def active_adapter(self) -> str:
        """The first active adapter's name."""
        return self.active_adapters[0]

    def add_adapter(self, adapter_name: str, lora_config: LoRAConfig | Mapping | None) -> None:
        """Inject a new adapter (inactive until :meth:`set_adapter`, except the first)."""
        config = LoRAConfig.coerce(lora_config)
        if not isinstance(adapter_name, str) or not adapter_name or "." in adapter_name:
            raise ValueError(f"adapter_name={adapter_name!r} must be a non-empty str without '.'")
        if adapter_name in self.peft_config:
            raise ValueError(f"adapter {adapter_name!r} already exists; pick another name")
        strategy = make_strategy(config.variant)
        targets, saves = config.target_modules, config.modules_to_save or []
        explicit = targets is not None
        new, existing, to_save, seen = [], [], [], []
        stop = (LoRAWrapper, ModulesToSave)
        for full, mod, parent, attr in iter_modules(self.base_model, stop):
            seen.append(full)
            if saves and match_target(full, saves):
                to_save.append((full, mod, parent, attr))
                continue
            if not match_target(full, targets):
                continue
            if isinstance(mod, LoRAWrapper):
                for slot in mod.slots:
                    strategy.check_kind(mod.kind(slot).name, full)
                existing.append((full, mod))
                continue
            cls = wrapper_for(mod)
            if cls is not None and isinstance(parent, nn.MultiheadAttention):
                if explicit:
                    raise ValueError(
                        f"{full} is inside nn.MultiheadAttention, which reads its weight "
                        "directly: a LoRA there would be silently ignored; target other layers"
                    )
                continue
            if cls is None:
                if explicit and not any(True for _ in mod.children()):
                    raise ValueError(
                        f"target {full} is a {type(mod).__name__}, which LoRA cannot wrap; "
                        "supported: Linear, Conv2d, Embedding, RNNCell, LSTMCell, GRUCell"
                    )
                continue
            rank = match_pattern(full, config.rank_pattern) or config.rank
            alpha = match_pattern(full, config.alpha_pattern) or config.alpha
            try:
                wrapper = cls.from_module(mod, config, adapter_name, rank=rank, alpha=alpha)
            except (TypeError, ValueError) as err:
                raise ValueError(f"cannot adapt {full}: {err}") from err
            new.append((parent, attr, wrapper))
        if not new and not existing:
            raise ValueError(
                f"target_modules={targets!r} matched no supported layer of "
                f"{type(self.base_model).__name__}; module names are: {seen[:20]}"
            )
        for parent, attr, wrapper in new:
            setattr(parent, attr, wrapper)
        for full, wrapper in existing:
            rank = match_pattern(full, config.rank_pattern) or config.rank
            alpha = match_pattern(full, config.alpha_pattern) or config.alpha
            wrapper.add_adapter(adapter_name, config, rank=rank, alpha=alpha)
        for _, mod, parent, attr in to_save:
            if isinstance(mod, ModulesToSave):
                mod.add(adapter_name)
            else:
                setattr(parent, attr, ModulesToSave(mod, adapter_name))
        self.peft_config[adapter_name] = config
        self.set_adapter(self.active_adapters or [adapter_name])

    def set_adapter(self, adapter_names: str | Sequence[str]) -> None:
        """Activate ``adapter_names``; only active adapters' parameters are trainable."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        for n in names:
            if n not in self.peft_config:
                raise ValueError(f"unknown adapter {n!r}; known: {list(self.peft_config)}")
        self.active_adapters = names
        for wrapper in self.lora_layers.values():
            wrapper.active_adapters = [n for n in names if n in wrapper.lora_adapters]
            for n, slots in wrapper.lora_adapters.items():
                slots.requires_grad_(n in names)
        for saved in self._saved_modules().values():
            saved.active_adapter = names[0]
            for n, m in saved.modules_to_save.items():
                m.requires_grad_(n == names[0])

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter from every layer."""
        if adapter_name not in self.peft_config:
            raise ValueError(f"unknown adapter {adapter_name!r}; known: {list(self.peft_config)}")
        if len(self.peft_config) == 1:
            raise ValueError("cannot delete the only adapter; use merge_and_unload() or unload()")
        for wrapper in self.lora_layers.values():
            if adapter_name in wrapper.lora_adapters:
                wrapper.delete_adapter(adapter_name)
        for saved in self._saved_modules().values():
            saved.modules_to_save.pop(adapter_name, None)
        del self.peft_config[adapter_name]
        rest = [n for n in self.active_adapters if n != adapter_name]
        self.set_adapter(rest or next(iter(self.peft_config)))

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Run the base model alone inside the block (merged adapters are unmerged, then back)."""
        merged = {n: list(w.merged_adapters) for n, w in self.lora_layers.items() if w.merged}
        self.unmerge()
        layers, saved = self.lora_layers, self._saved_modules()
        for m in (*layers.values(), *saved.values()):
            m.disabled = True
        try:
            yield
        finally:
            for m in (*layers.values(), *saved.values()):
                m.disabled = False
            for name, adapters in merged.items():
                layers[name].merge(adapter_names=adapters)

    @contextlib.contextmanager
    def condition(self, **values: Any) -> Iterator[None]:
        """Per-call conditioning for ConditionalLoRA (``task_ids``) / HyperLoRA (``task_embedding``)."""
        unknown = set(values) - set(_CONDITION_KEYS)
        if unknown:
            raise ValueError(f"unknown condition {sorted(unknown)}; known: {_CONDITION_KEYS}")
        with contextlib.ExitStack() as stack:
            for wrapper in self.lora_layers.values():
                stack.enter_context(wrapper.condition(**values))
            yield

    def forward(self, *args, **kwargs):
        """Call the base model; ``task_ids=`` / ``task_embedding=`` are taken as conditions."""
        cond = {k: kwargs.pop(k) for k in _CONDITION_KEYS if k in kwargs}
        if not cond:
            return self.base_model(*args, **kwargs)
        with self.condition(**cond):
            return self.base_model(*args, **kwargs)

    # --- merging -----------------------------------------------------------------------
    def merge(self, safe_merge: bool = True, adapter_names: Sequence[str] | None = None) -> None:
        """Fold the active adapters into the base weights (all layers or none)."""
        plans = []
        for name, wrapper in self.lora_layers.items():
            names = [
                n for n in (adapter_names or self.active_adapters) if n in wrapper.lora_adapters
            ]
            todo = [n for n in names if n not in wrapper.merged_adapters]
            if not todo:
                continue
            plan = wrapper.plan_merge(todo)
            if safe_merge and not all(torch.isfinite(w).all() for w in plan.values()):
                raise ValueError(
                    f"merging adapters {todo} into {name} gives non-finite weights; the adapter "
                    "is broken (NaN/inf): nothing was merged"
                )
            plans.append((wrapper, plan, todo))
        for wrapper, plan, todo in plans:
            wrapper.commit_merge(plan, todo)

    def unmerge(self) -> None:
        """Undo :meth:`merge` on every layer."""
        for wrapper in self.lora_layers.values():
            wrapper.unmerge()

    @property
    def merged(self) -> bool:
        """Whether any layer has a merged adapter."""
        return any(w.merged for w in self.lora_layers.values())

    def merge_and_unmerge(self) -> None:
        """Toggle: merge when unmerged, unmerge when merged (the seed's method)."""
        if self.merged:
            self.unmerge()
        else:
            self.merge()

    def _replace_wrappers(self) -> nn.Module:
        stop = (LoRAWrapper, ModulesToSave)
        for _, mod, parent, attr in list(iter_modules(self.base_model, stop)):
            if isinstance(mod, LoRAWrapper):
                setattr(parent, attr, mod.base_layer)
            elif isinstance(mod, ModulesToSave):
                setattr(parent, attr, mod.active_module())
        return self.base_model

    def merge_and_unload(self, safe_merge: bool = True) -> nn.Module:
        """Merge the active adapters and return the bare base model (wrappers removed)."""
        self.merge(safe_merge=safe_merge)
        return self._replace_wrappers()

    def unload(self) -> nn.Module:
        """Return the base model without adapters (nothing merged)."""
        self.unmerge()
        return self._replace_wrappers()

    def train(self, mode: bool = True) -> LoRAModel:
        """Set the mode; with ``merge_weights`` merge on eval and unmerge on train."""
        super().train(mode)
        if getattr(self, "merge_weights", False) and self.peft_config:
            if mode:
                self.unmerge()
            else:
                self.merge()
        return self

    # --- training helpers --------------------------------------------------------------
    def get_trainable_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters: active adapters and their modules_to_save copies."""
        return [p for p in self.parameters() if p.requires_grad]

    def trainable_parameter_count(self) -> tuple[int, int]:
        """``(trainable, total)`` parameter counts (each tensor counted once)."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def adapters(self, adapter_name: str) -> list[Adapter]:
        """Every per-slot adapter module of ``adapter_name`` (all layers)."""
        return [
            a
            for w in self.lora_layers.values()
            if adapter_name in w.lora_adapters
            for a in w.lora_adapters[adapter_name].values()
        ]

    def regularization_loss(self) -> Tensor:
        """Sum of the active variants' regularisers (AdaLoRA's orthogonality); 0 if none."""
        total = None
        for name in self.active_adapters:
            adapters = self.adapters(name)
            reg = adapters[0].strategy.regularization(adapters) if adapters else None
            if reg is not None:
                total = reg if total is None else total + reg
        return torch.zeros(()) if total is None else total

    def update_and_allocate(self, global_step: int) -> None:
        """Run the variants' periodic step (AdaLoRA budget, pruning); LoRAOptimizer calls it."""
        for name in self.active_adapters:
            adapters = self.adapters(name)
            if adapters:
                adapters[0].strategy.update(adapters, global_step)

    # --- files -------------------------------------------------------------------------
    def save_adapter(self, save_directory: str | Path, adapter_name: str | None = None) -> Path:
        """Write ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT's format)."""
        from braingate.lora.io import save_adapter

        return save_adapter(self, save_directory, adapter_name or self.active_adapter)

    def load_adapter(self, directory: str | Path, adapter_name: str = "default") -> None:
        """Add an adapter from a PEFT-format directory under ``adapter_name``.

        All or nothing: if the files are missing, corrupt or do not fit, the error names the
        file (and the config field) and this model is left exactly as it was.
        """
        from braingate.lora.io import load_into

        load_into(self, directory, adapter_name)
