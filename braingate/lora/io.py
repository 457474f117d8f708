"""Adapter files in PEFT's format: ``adapter_config.json`` + ``adapter_model.safetensors``.

Tensor keys follow PEFT (REFERENCES.md §F): ``base_model.model.<module>.lora_A.weight`` /
``lora_B.weight`` (embeddings: ``lora_embedding_A`` / ``lora_embedding_B``), DoRA's
``lora_magnitude_vector``, and ``base_model.model.<module>.<param>`` for ``modules_to_save``.
RNN cells, which PEFT does not adapt, use ``<module>.weight_ih.lora_A.weight`` and so on.
Plain LoRA and DoRA files load with ``peft.PeftModel.from_pretrained``; other variants are
written with ``peft_type = "BRAINGATE_<NAME>"`` and their config under ``"braingate_variant"``,
so PEFT refuses them instead of misreading them. ``peft`` is never imported here.

Saves are atomic per file (temporary file + ``os.replace``). Loads are all or nothing: the
config and tensors are read and checked before the model is touched, and any exception after
that restores the caller's model exactly (no wrappers left, same modules, same flags).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from braingate._files import atomic_write_bytes, atomic_write_text
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
    tensors = adapter_state_dict(model, adapter_name)
    blob = _safetensors().save(tensors, metadata={"format": "pt"})
    config = json.dumps(_config_dict(model, adapter_name), indent=2, sort_keys=True)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / WEIGHTS_NAME, blob)
    atomic_write_text(directory / CONFIG_NAME, config)
    return directory


# JSON field -> LoRAConfig argument; each is checked alone so an error names its field.
_FIELDS = {
    "r": "rank",
    "lora_alpha": "alpha",
    "lora_dropout": "dropout",
    "target_modules": "target_modules",
    "use_rslora": "use_rslora",
    "modules_to_save": "modules_to_save",
    "rank_pattern": "rank_pattern",
    "alpha_pattern": "alpha_pattern",
}
_UNSUPPORTED = {
    "fan_in_fan_out": False,
    "lora_bias": False,
    "layers_to_transform": None,
    "layer_replication": None,
    "exclude_modules": None,
    "target_parameters": None,
}


def _field_error(path: Path, key: str, problem: str) -> ValueError:
    sep = "" if problem.startswith("=") else " "
    return ValueError(f"{path}: field {key!r}{sep}{problem}")


def _check_finite(path: Path, key: str, value: Any) -> None:
    numbers = value.values() if isinstance(value, dict) else [value]
    for v in numbers:
        if isinstance(v, float) and not math.isfinite(v):
            raise _field_error(path, key, f"is {v!r}; pass a finite number")


def _variant_from(path: Path, raw: dict[str, Any]) -> Any:
    peft_type = raw.get("peft_type", "LORA")
    if "braingate_variant" in raw:
        spec = raw["braingate_variant"]
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _field_error(path, "braingate_variant", 'must be {"name": str, "config": {...}}')
        try:
            cfg_cls, _ = get_variant(spec["name"])
        except ValueError as err:
            raise _field_error(path, "braingate_variant.name", str(err)) from None
        cfg = spec.get("config", {})
        if not isinstance(cfg, dict):
            raise _field_error(path, "braingate_variant.config", "must be an object")
        for key, value in cfg.items():
            _check_finite(path, f"braingate_variant.config.{key}", value)
        try:
            return cfg_cls(**cfg)
        except (TypeError, ValueError) as err:
            raise _field_error(path, "braingate_variant.config", f"is invalid: {err}") from None
    if peft_type != "LORA":
        raise _field_error(path, "peft_type", f"={peft_type!r} is not supported; only LoRA loads")
    use_dora = raw.get("use_dora", False)
    if not isinstance(use_dora, bool):
        raise _field_error(path, "use_dora", f"={use_dora!r} must be true or false")
    return "dora" if use_dora else None


def read_config(directory: str | Path) -> LoRAConfig:
    """Build a :class:`LoRAConfig` from a PEFT (or braingate) ``adapter_config.json``.

    Raises:
        FileNotFoundError: no ``adapter_config.json`` in ``directory``.
        ValueError: the file is not JSON, not an object, or a field is missing or invalid;
            the message names the file and the field.
    """
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the directory written by save_adapter")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the file is corrupt") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} holds a JSON {type(raw).__name__}, not an adapter config object")
    for key in ("r", "lora_alpha"):
        if key not in raw:
            raise _field_error(path, key, "is missing; an adapter config needs r and lora_alpha")
    for key, default in _UNSUPPORTED.items():
        if raw.get(key, default) not in (default, [], {}):
            raise _field_error(path, key, f"={raw[key]!r} is not supported by braingate.lora")
    if raw.get("bias", "none") != "none":
        raise _field_error(path, "bias", f"={raw['bias']!r} is not supported; only 'none'")
    kwargs: dict[str, Any] = {}
    for key, arg in _FIELDS.items():
        if key not in raw or (raw[key] is None and arg in ("rank_pattern", "alpha_pattern")):
            continue
        _check_finite(path, key, raw[key])
        try:
            LoRAConfig(**{arg: raw[key]})
        except (TypeError, ValueError) as err:
            raise _field_error(path, key, f"is invalid: {err}") from None
        kwargs[arg] = raw[key]
    kwargs["variant"] = _variant_from(path, raw)
    try:
        return LoRAConfig(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: the fields do not form a valid config: {err}") from None


def _read_tensors(directory: Path) -> dict[str, Tensor]:
    """The adapter's tensors from disk; a missing, truncated or corrupt file raises naming it."""
    path = directory / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; save_adapter writes it beside {CONFIG_NAME}")
    st = _safetensors()
    try:
        tensors = st.load(path.read_bytes())
    except Exception as err:
        raise ValueError(
            f"{path} ({path.stat().st_size} bytes) cannot be read: it is truncated or not a "
            f"safetensors file ({type(err).__name__}: {err})"
        ) from None
    for key, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{path}: tensor {key!r} holds NaN or inf; the adapter is corrupt")
    return tensors


@contextlib.contextmanager
def _all_or_nothing(root: nn.Module) -> Iterator[None]:
    """Undo every change to ``root``'s modules if the block raises (then re-raise).

    Saves each module's attribute dict one level deep (children, parameters, buffers, hooks,
    lists such as active adapters) and every tensor's ``requires_grad``. Loading never writes
    into the base tensors, which a version-counter check confirms on the way out.
    """
    modules = list(root.modules())
    saved = [
        (
            m,
            {
                k: copy.copy(v) if isinstance(v, (dict, list, set)) else v
                for k, v in vars(m).items()
            },
        )
        for m in modules
    ]
    tensors = [(t, t.requires_grad, t._version) for t in (*root.parameters(), *root.buffers())]
    try:
        yield
    except BaseException as err:
        for m, attrs in saved:
            m.__dict__.clear()
            m.__dict__.update(attrs)
        for t, grad, _ in tensors:
            t.requires_grad_(grad)
        if any(t._version != version for t, _, version in tensors):  # pragma: no cover - a bug
            raise RuntimeError("a failed adapter load wrote into the base model's tensors") from err
        raise


def _load_tensors(model: LoRAModel, tensors: dict[str, Tensor], source: Path, name: str) -> None:
    """Check every key and shape first, then copy the file's tensors into the adapter."""
    params = _key_to_tensor(model, name)
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise ValueError(
            f"adapter file {source} does not fit the model: missing keys "
            f"{missing[:5]}, unexpected keys {unexpected[:5]}"
        )
    shapes = [
        f"{key}: file {tuple(value.shape)} vs model {tuple(params[key].shape)}"
        for key, value in tensors.items()
        if value.shape != params[key].shape
    ]
    if shapes:
        raise ValueError(f"adapter file {source} does not fit the model: {shapes[:5]}")
    with torch.no_grad():
        for key, value in tensors.items():
            params[key].copy_(value.to(params[key].dtype))


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
    """Wrap ``base_model`` with the adapter saved in ``directory`` (by braingate or PEFT).

    All or nothing: on any error ``base_model`` is left exactly as it was.
    """
    directory = Path(directory)
    config = read_config(directory)
    tensors = _read_tensors(directory)
    with _all_or_nothing(base_model):
        model = LoRAModel(base_model, config, adapter_name=adapter_name)
        _load_tensors(model, tensors, directory / WEIGHTS_NAME, adapter_name)
    return model


def load_into(model: LoRAModel, directory: str | Path, adapter_name: str) -> None:
    """Add the adapter in ``directory`` to an existing LoRAModel as ``adapter_name``.

    All or nothing: on any error ``model`` is left exactly as it was.
    """
    directory = Path(directory)
    config = read_config(directory)
    tensors = _read_tensors(directory)
    with _all_or_nothing(model):
        model.add_adapter(adapter_name, config)
        _load_tensors(model, tensors, directory / WEIGHTS_NAME, adapter_name)
