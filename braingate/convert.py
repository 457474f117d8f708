"""convert(): replace torch layers by event layers (truncated SVD of each weight).

Which torch module types convert, and how, is the :data:`CONVERTERS` registry: ``nn.Linear`` ->
:class:`~braingate.nn.EventLinear` here; convolutions and recurrent layers register their
converters in their own files. ``rank`` and ``blocks`` are applied per layer as far as each layer
allows; every adjustment, and every layer left dense, is listed in ``model.conversion_report``
(and the layers left dense in a warning), never skipped silently.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import NamedTuple

from torch import Tensor, nn

from braingate._registry import Registry
from braingate.nn.event_linear import EventLinear

__all__ = ["CONVERTERS", "Converter", "convert"]


class Converter(NamedTuple):
    """How one torch module type converts.

    Attributes:
        full_rank: ``module -> int``: the largest rank its factorisation can have.
        build: ``(module, rank, blocks, threshold, latent_threshold) -> event module`` (with
            an ``approx_error`` attribute: relative Frobenius error of the factorisation).
        absorbs: optional ``(module, next_module) -> bool``: the next module (e.g. a
            BatchNorm after a conv) is folded into this one's weights and replaced by Identity.
        fold: ``(module, next_module) -> module`` computing ``next_module(module(x))``.
        refusal: optional ``module -> str``: why this module cannot convert ("" if it can); a
            refused layer is left dense and reported.
    """

    full_rank: Callable
    build: Callable
    absorbs: Callable | None = None
    fold: Callable | None = None
    refusal: Callable | None = None


#: torch module type -> :class:`Converter` (subclasses inherit their base's converter).
CONVERTERS: Registry[Converter] = Registry("layer converter")

CONVERTERS.add(
    nn.Linear,
    Converter(
        lambda lin: min(lin.in_features, lin.out_features),
        lambda lin, r, blocks, th, lth: EventLinear.from_linear(
            lin, r, blocks=blocks, threshold=th, latent_threshold=lth
        ),
    ),
)

#: Module types that hold weights but have no converter: left dense and reported as such.
_WEIGHTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.RNNBase, nn.RNNCellBase, nn.Embedding)


def _converter(m: nn.Module) -> Converter | None:
    for cls in type(m).__mro__:
        if cls in CONVERTERS:
            return CONVERTERS.get(cls)
    return None


def convert(
    model: nn.Module,
    rank: int | float | dict[str, int],
    *,
    blocks: int = 1,
    threshold: float | Tensor = 0.0,
    latent_threshold: float | Tensor = 0.0,
    targets: str | list[str] | None = None,
    execution: str = "dense",
) -> nn.Module:
    """Replace the convertible layers of ``model`` (in place) by event layers.

    Args:
        model: the module to convert (modified in place and returned).
        rank: an int (capped at each layer's full rank), a float in (0, 1] (fraction of each
            layer's full rank), or ``{module name: rank}`` (int or fraction per layer;
            convertible layers it does not name stay dense, listed in the warning and report).
        blocks: gate blocks per layer, as far as each layer allows (a layer whose rank cannot
            hold ``blocks`` gets the most it can; listed in the report).
        threshold, latent_threshold, execution: passed to every new layer.
        targets: which layers to convert: None (all convertible), a regex fully matching the
            module name, or a list of names (equal to, or ending with ``.name``).

    Returns:
        ``model``, with ``model.conversion_errors`` ``{name: relative Frobenius error}`` and
        ``model.conversion_report`` ``{name: {"type", "converted", "rank", "blocks",
        "full_rank", "error", "adjusted": [reasons]}}`` — layers left dense included.
    """
    from braingate.nn._validate import execution_mode

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    execution_mode(execution)
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"blocks={blocks!r} must be an int >= 1")
    _check_rank(rank)
    named = list(model.named_modules())
    names = [n for n, m in named if _converter(m) is not None and _wanted(n, targets)]
    if targets is not None and not names:
        raise ValueError(
            f"targets={targets!r} matched no nn.Linear or other convertible layer in the model"
        )
    if isinstance(rank, dict):
        unknown = sorted(set(rank) - set(names))
        if unknown:
            raise ValueError(f"rank dict names {unknown}, not convertible layers; known: {names}")
        names = [n for n in names if n in rank]  # the others stay dense (reported, warned)
    plans, refused = {}, {}
    for name in names:  # plan every layer first: a bad rank leaves the model untouched
        mod = model.get_submodule(name)
        conv = _converter(mod)
        why = conv.refusal(mod) if conv.refusal is not None else ""
        if why:
            refused[name] = why
            continue
        plans[name] = _plan(name, mod, rank, blocks)
    names = [n for n in names if n not in refused]
    # build every event layer before touching the model: a layer that fails to build (a bad
    # threshold, a per-unit tensor of the wrong size) leaves the model as it was
    built = []
    for name in names:
        mod = model.get_submodule(name)
        r, b, adjusted = plans[name]
        conv = _converter(mod)
        parent, attr = _parent(model, name)
        bn_key = None
        if conv.absorbs is not None and conv.fold is not None and isinstance(parent, nn.Sequential):
            keys = list(parent._modules)
            i = keys.index(attr)
            nxt = parent._modules[keys[i + 1]] if i + 1 < len(keys) else None
            if conv.absorbs(mod, nxt):
                mod = conv.fold(mod, nxt)
                bn_key = keys[i + 1]
        try:
            layer = conv.build(mod, r, b, threshold, latent_threshold)
            layer.execution = execution
        except (TypeError, ValueError) as e:
            if type(e) not in (TypeError, ValueError):
                raise
            raise type(e)(f"converting {name!r}: {e} (the model was not changed)") from e
        built.append((name, mod, parent, attr, bn_key, layer, r, b, adjusted, conv))
    report, errors = {}, {}
    for name, mod, parent, attr, bn_key, layer, r, b, adjusted, conv in built:
        if bn_key is not None:
            parent._modules[bn_key] = nn.Identity()
        setattr(parent, attr, layer)
        errors[name] = float(layer.approx_error)
        adjusted = adjusted + list(getattr(layer, "conversion_adjustments", ()))
        report[name] = {"type": type(mod).__name__, "converted": True, "rank": r, "blocks": b,
                        "full_rank": conv.full_rank(mod), "error": errors[name],
                        "adjusted": adjusted}  # fmt: skip
        if getattr(layer, "ranks", None) is not None:
            report[name]["ranks"] = [list(x) if isinstance(x, tuple) else x for x in layer.ranks]
        if bn_key is not None:
            report[name]["folded"] = f"{name.rpartition('.')[0]}.{bn_key}".lstrip(".")
    for name, why in refused.items():
        report[name] = {"type": type(model.get_submodule(name)).__name__, "converted": False,
                        "reason": why}  # fmt: skip
    left = [
        (n, m)
        for n, m in named
        if n
        and n not in names
        and n not in refused
        and isinstance(m, _WEIGHTED)
        and not _inside(n, names)
    ]
    for n, m in left:
        if _converter(m) is None:
            why = "no converter for this type"
        elif isinstance(rank, dict) and n not in rank and _wanted(n, targets):
            why = "not in the rank dict"
        else:
            why = "not in targets"
        report[n] = {"type": type(m).__name__, "converted": False, "reason": why}
    dense = [(n, model.get_submodule(n)) for n in refused] + left
    if dense:
        warnings.warn(
            "bg.convert left these layers dense (counted at their dense cost by simulate): "
            + ", ".join(f"{n} ({type(m).__name__}: {report[n]['reason']})" for n, m in dense),
            stacklevel=2,
        )
    model.conversion_errors = errors
    model.conversion_report = report
    return model


def _inside(name: str, parents: list[str]) -> bool:
    return any(name.startswith(p + ".") for p in parents)


def _wanted(name: str, targets) -> bool:
    if targets is None:
        return True
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, attr = name.split(".")
    parent = model
    for p in path:
        parent = getattr(parent, p)
    return parent, attr


def _check_rank(rank) -> None:
    values = rank.values() if isinstance(rank, dict) else [rank]
    if isinstance(rank, dict) and not rank:
        raise ValueError("rank dict is empty; pass {module name: rank}")
    for r in values:
        if isinstance(r, bool) or not isinstance(r, (int, float)):
            raise TypeError(f"rank must be an int, float or dict, got {type(r).__name__}")
        if isinstance(r, float) and not 0 < r <= 1:
            raise ValueError(f"rank={r} as a fraction must be in (0, 1]; or pass an int")
        if isinstance(r, int) and r <= 0:
            raise ValueError(f"rank={r} must be positive; pass rank>=1")


def _plan(name: str, mod: nn.Module, rank, blocks: int) -> tuple[int, int, list[str]]:
    """``(rank, blocks, adjustments)`` for one layer, as close to the request as it allows."""
    full = _converter(mod).full_rank(mod)
    want = rank[name] if isinstance(rank, dict) else rank
    adjusted = []
    r = max(1, round(want * full)) if isinstance(want, float) else want
    if r > full:
        adjusted.append(f"rank {r} capped at the layer's full rank {full}")
        r = full
    b = blocks
    if b > r:
        adjusted.append(f"blocks {b} reduced to {r}: rank {r} cannot hold more")
        b = r
    if r % b:
        r2 = r // b * b
        adjusted.append(f"rank {r} rounded down to {r2}, a multiple of blocks={b}")
        r = r2
    return r, b, adjusted
