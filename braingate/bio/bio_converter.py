"""BioConverter: attach :class:`BioModule` to every supported layer of a model (or model class).

After conversion the model has one method per name in ``BioModule.exposed_functions``
(``bio_model.fuzzy_learning_rates()``, ``bio_model.crystallize()``, ...) that calls it on every
converted layer. Methods that edit gradients first check that every layer has one, so a missing
``loss.backward()`` raises before anything is modified.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from braingate.bio.bio_config import BioConfig
from braingate.bio.bio_module import BioModule
from braingate.bio.distributions import SampleContext
from braingate.bio.targets import layer_spec, out_features


def _checked(config: BioConfig, values: Mapping[str, Any], caller: str) -> BioConfig:
    unknown = sorted(set(values) - set(BioConfig.field_names()))
    if unknown:
        raise TypeError(
            f"{caller} got unknown parameter(s) {unknown}; known: {', '.join(BioConfig.field_names())}"
        )
    return dataclasses.replace(config, **dict(values))


class ModelMethod:
    """``model.<name>(...)``: call ``bio_mod.<name>(...)`` on every converted layer of ``model``."""

    def __init__(self, model: nn.Module, name: str) -> None:
        self.model, self.name = model, name

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        mods = [(n, m.bio_mod) for n, m in self.model.named_modules() if _has_bio(m)]
        mods = [(n, b) for n, b in mods if hasattr(b, self.name)]
        if self.name in BioModule.grad_functions:
            for layer_name, bio_mod in mods:
                missing = bio_mod.missing_grads()
                if missing:
                    raise ValueError(
                        f"{self.name}() needs gradients but layer '{layer_name}' has "
                        f"{missing[0]}.grad = None; call loss.backward() before {self.name}()"
                    )
        if self.name == "update_fuzzy_learning_rates" and (args or kwargs):
            with torch.no_grad():  # one pass over the model records every layer's activity
                self.model(*args, **kwargs)
            args, kwargs = (), {}
        for _, bio_mod in mods:
            getattr(bio_mod, self.name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<bio method {self.name} of {type(self.model).__name__}>"


def _has_bio(module: nn.Module) -> bool:
    return isinstance(module._modules.get("bio_mod"), BioModule)


class BioConverter:
    """Convert a model (instance or class) to its bio-inspired version.

    Args:
        config: a :class:`BioConfig`; defaults when None.
        **overrides: BioConfig fields replacing those of ``config``.

    Weight splitting (Γ > 1) groups output channels of every converted layer except the last
    one (in registration order) and any marked with :meth:`set_last_module_token_for_module`;
    Γ must divide their output width.

    >>> import torch.nn as nn
    >>> bio = BioConverter(fuzzy_learning_rate_factor_nu=0.2)(nn.Sequential(nn.Linear(4, 3)))
    >>> tuple(bio[0].bio_mod.fuzzy_learning_rate_parameters.shape)
    (3, 4)
    """

    def __init__(self, config: BioConfig | None = None, **overrides: Any) -> None:
        if config is not None and not isinstance(config, BioConfig):
            raise TypeError(f"config must be a BioConfig or None, got {type(config).__name__}")
        self.config = _checked(config or BioConfig(), overrides, "BioConverter")
        self._contexts: dict[int, SampleContext] = {}

    @classmethod
    def from_dict(cls, config_dict: Mapping[str, Any]) -> BioConverter:
        """A converter whose config is the defaults updated by ``config_dict``."""
        return cls(BioConfig.from_dict(config_dict))

    def update_config(self, **kwargs: Any) -> None:
        """Replace some config fields (validated; the old config stays on error)."""
        self.config = _checked(self.config, kwargs, "update_config")

    def get_config(self) -> BioConfig:
        """The current :class:`BioConfig`."""
        return self.config

    @staticmethod
    def set_last_module_token_for_module(module: nn.Module) -> None:
        """Mark ``module`` as an output layer: weight splitting skips it."""
        module.last_module_token = True

    def __call__(self, module_class_or_instance: Any) -> Any:
        return self.convert(module_class_or_instance)

    def convert(self, module_class_or_instance: Any) -> Any:
        """Convert an ``nn.Module`` instance (in place, returned) or subclass (a new subclass)."""
        obj = module_class_or_instance
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            return self._convert_class(obj)
        if isinstance(obj, nn.Module):
            return self._convert_instance(obj)
        raise TypeError(
            f"Unsupported type for module_class_or_instance: {type(obj)}; "
            "pass an nn.Module instance or an nn.Module subclass"
        )

    def _convert_class(self, module_class: type) -> type:
        if not isinstance(module_class, type):
            raise TypeError(f"module_class must be a class; instead got: {type(module_class)}")
        converter = self

        def __init__(inst: nn.Module, *args: Any, **kwargs: Any) -> None:
            module_class.__init__(inst, *args, **kwargs)
            converter._convert_instance(inst)

        attrs = {
            "__init__": __init__,
            "__module__": module_class.__module__,
            "__qualname__": module_class.__qualname__,
            "__doc__": module_class.__doc__,
        }
        return type(module_class.__name__, (module_class,), attrs)

    def _bio_modulize(self, module: nn.Module) -> None:
        """Attach a :class:`BioModule` as ``module.bio_mod`` when the layer type is supported."""
        if layer_spec(module) is not None:
            context = self._contexts.get(id(module), SampleContext())
            module.add_module("bio_mod", BioModule(module, config=self.config, context=context))

    def _convert_instance(self, model: nn.Module) -> nn.Module:
        modules = [m for m in model.modules() if not isinstance(m, BioModule)]
        named = [(n, m) for n, m in model.named_modules() if layer_spec(m) is not None]
        gamma = self.config.weight_splitting_Gamma
        split: dict[int, bool] = {}
        for i, (name, m) in enumerate(named):
            last = i == len(named) - 1 or getattr(m, "last_module_token", False)
            split[id(m)] = gamma > 1 and not last
            if split[id(m)] and out_features(m) % gamma:
                raise ValueError(
                    f"weight_splitting_Gamma={gamma} must evenly divide the number of features "
                    f"of layer '{name}' (out={out_features(m)}); pass a Γ that divides it, "
                    "weight_splitting_Gamma=0, or mark the layer with "
                    "BioConverter.set_last_module_token_for_module(layer)"
                )
        self._contexts = {id(m): SampleContext(i, len(named)) for i, (_, m) in enumerate(named)}
        try:
            for module in modules:
                self._bio_modulize(module)
        finally:
            self._contexts = {}
        exposed = set(BioModule.exposed_functions)
        for module in modules:
            if not _has_bio(module):
                continue
            bio_mod = module.bio_mod
            bio_mod.bind_parent(module)  # a deep copy of the model then points at the copy
            bio_mod.weight_splitting = split.get(id(module), False)
            if bio_mod.weight_splitting or bio_mod.records_activity():
                bio_mod.attach_hook()
            exposed.update(type(bio_mod).exposed_functions)
        for name in sorted(exposed):
            setattr(model, name, ModelMethod(model, name))
        return model
