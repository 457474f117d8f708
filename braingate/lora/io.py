"""Adapter files in PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``.

Tensor keys follow PEFT (REFERENCES.md §F): ``base_model.model.<module>.lora_A.weight`` /
``lora_B.weight`` (embeddings: ``lora_embedding_A`` / ``lora_embedding_B``), DoRA's
``lora_magnitude_vector``, and ``base_model.model.<module>.<param>`` for ``modules_to_save``.
RNN cells, which PEFT does not adapt, use ``<module>.weight_ih.lora_A.weight`` and so on.
Plain LoRA and DoRA files load with ``peft.PeftModel.from_pretrained``; other variants are
written with ``peft_type = "BRAINGATE_<NAME>"`` and their config under ``"braingate_variant"``,
so PEFT refuses them instead of misreading them. ``peft`` is never imported here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from braingate.lora.config import LoRAConfig
from braingate.lora.model import LoRAModel
from braingate.lora.variants.registry import get_variant

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "adapter_state_dict", "load_adapter", "save_adapter"]

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_EMBED = {"lora_A.weight": "lora_embedding_A", "lora_B.weight": "lora_embedding_B"}


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("adapter files need safetensors: pip install 'braingate[lora]'") from err
    return st


def adapter_state_dict(model: LoRAModel, adapter_name: str) -> dict[str, Tensor]:
    """The adapter's tensors under PEFT's file keys."""
    if adapter_name not in model.peft_config:
        raise ValueError(f"unknown adapter {adapter_name!r}; known: {list(model.peft_config)}")
    tensors = _key_to_tensor(model, adapter_name, keep_vars=False)
    return {key: value.detach().contiguous() for key, value in tensors.items()}


def _config_dict(model: LoRAModel, adapter_name: str) -> dict[str, Any]:
    cfg = model.peft_config[adapter_name]
    _, strategy_cls = get_variant(cfg.variant_name)
    targets = cfg.target_modules
    if targets is None:
        targets = sorted(n for n, w in model.lora_layers.items() if adapter_name in w.lora_adapters)
    out: dict[str, Any] = {
        "peft_type": "LORA"
        if strategy_cls.peft_compatible
        else f"BRAINGATE_{cfg.variant_name.upper()}",
        "r": cfg.rank,
        "lora_alpha": cfg.alpha,
        "lora_dropout": cfg.dropout,
        "target_modules": targets,
        "use_rslora": cfg.use_rslora,
        "modules_to_save": cfg.modules_to_save,
        "rank_pattern": dict(cfg.rank_pattern),
        "alpha_pattern": dict(cfg.alpha_pattern),
        "use_dora": cfg.variant_name == "dora",
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "lora_bias": False,
        "task_type": None,
        "base_model_name_or_path": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "revision": None,
    }
    if cfg.variant_name not in ("lora", "dora"):
        out["braingate_variant"] = {"name": cfg.variant_name, "config": cfg.variant.to_dict()}
    return out


def save_adapter(model: LoRAModel, save_directory: str | Path, adapter_name: str) -> Path:
    """Write the adapter's config and tensors to ``save_directory`` (created if missing)."""
    directory = Path(save_directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = adapter_state_dict(model, adapter_name)
    _safetensors().save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    config = _config_dict(model, adapter_name)
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True))
    return directory


def read_config(directory: str | Path) -> LoRAConfig:
    """Build a :class:`LoRAConfig` from a PEFT (or braingate) ``adapter_config.json``."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the directory written by save_adapter")
    raw = json.loads(path.read_text())
    peft_type = raw.get("peft_type", "LORA")
    variant: Any = None
    if "braingate_variant" in raw:
        cfg_cls, _ = get_variant(raw["braingate_variant"]["name"])
        variant = cfg_cls(**raw["braingate_variant"]["config"])
    elif peft_type != "LORA":
        raise ValueError(f"peft_type={peft_type!r} is not supported; only LoRA adapters load")
    elif raw.get("use_dora"):
        variant = "dora"
    unsupported = {
        "fan_in_fan_out": False,
        "lora_bias": False,
        "layers_to_transform": None,
        "layer_replication": None,
        "exclude_modules": None,
        "target_parameters": None,
    }
    for key, default in unsupported.items():
        if raw.get(key, default) not in (default, [], {}):
            raise ValueError(f"{key}={raw[key]!r} in {path} is not supported by braingate.lora")
    if raw.get("bias", "none") != "none":
        raise ValueError(f"bias={raw['bias']!r} in {path} is not supported; only 'none'")
    return LoRAConfig(
        rank=raw["r"],
        alpha=raw["lora_alpha"],
        dropout=raw.get("lora_dropout", 0.0),
        target_modules=raw.get("target_modules"),
        use_rslora=raw.get("use_rslora", False),
        modules_to_save=raw.get("modules_to_save"),
        variant=variant,
        rank_pattern=raw.get("rank_pattern") or {},
        alpha_pattern=raw.get("alpha_pattern") or {},
    )


def _load_tensors(model: LoRAModel, directory: Path, adapter_name: str) -> None:
    tensors = _safetensors().load_file(str(directory / WEIGHTS_NAME))
    expected = adapter_state_dict(model, adapter_name)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"adapter file {directory / WEIGHTS_NAME} does not fit the model: missing keys "
            f"{missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    params = _key_to_tensor(model, adapter_name)
    for key, value in tensors.items():
        target = params[key]
        if target.shape != value.shape:
            raise ValueError(f"{key}: file shape {tuple(value.shape)} != {tuple(target.shape)}")
        target.data.copy_(value.to(target.dtype))


def _key_to_tensor(
    model: LoRAModel, adapter_name: str, *, keep_vars: bool = True
) -> dict[str, Tensor]:
    """PEFT file key -> the model's tensor (``keep_vars``: the live parameter, as state_dict)."""
    out: dict[str, Tensor] = {}
    for path, wrapper in model.lora_layers.items():
        if adapter_name not in wrapper.lora_adapters:
            continue
        for slot, adapter in wrapper.lora_adapters[adapter_name].items():
            prefix = f"{_PREFIX}{path}." + ("" if slot == "weight" else f"{slot}.")
            for key, value in adapter.state_dict(keep_vars=keep_vars).items():
                if not isinstance(value, Tensor):  # EventLinear's extra state: in the config
                    continue
                if adapter.kind.name == "embedding":
                    key = _EMBED.get(key, key)
                out[prefix + key] = value
    for path, saved in model._saved_modules().items():
        if adapter_name in saved.modules_to_save:
            module: nn.Module = saved.modules_to_save[adapter_name]
            for key, value in module.state_dict(keep_vars=keep_vars).items():
                out[f"{_PREFIX}{path}.{key}"] = value
    return out


def load_adapter(
    base_model: nn.Module, directory: str | Path, adapter_name: str = "default"
) -> LoRAModel:
    """Wrap ``base_model`` with the adapter saved in ``directory`` (by braingate or PEFT)."""
    config = read_config(directory)
    model = LoRAModel(base_model, config, adapter_name=adapter_name)
    _load_tensors(model, Path(directory), adapter_name)
    return model


def load_into(model: LoRAModel, directory: str | Path, adapter_name: str) -> None:
    """Add the adapter in ``directory`` to an existing LoRAModel as ``adapter_name``."""
    model.add_adapter(adapter_name, read_config(directory))
    try:
        _load_tensors(model, Path(directory), adapter_name)
    except ValueError:
        model.delete_adapter(adapter_name)
        raise
