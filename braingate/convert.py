"""convert(): replace nn.Linear layers by EventLinear through truncated SVD."""

from __future__ import annotations

import re

from torch import Tensor, nn

from braingate.nn.event_linear import EventLinear

__all__ = ["convert"]


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
    """Replace ``nn.Linear`` layers of ``model`` (in place) by :class:`EventLinear` factors.

    Args:
        model: the module to convert (modified in place and returned).
        rank: an int (capped at ``min(n, m)`` and rounded down to a multiple of ``blocks``), a
            float in (0, 1] (fraction of ``min(n, m)``), or ``{module name: rank}``.
        blocks, threshold, latent_threshold, execution: passed to every new layer.
        targets: which linears to convert: None (all), a regex fully matching the module name,
            or a list of names (equal to, or ending with ``.name``).

    Returns:
        ``model``; ``model.conversion_errors`` maps each converted name to the relative
        Frobenius error ``‖W − U diag(s) Vᵀ‖_F / ‖W‖_F`` (also on each layer as
        ``approx_error``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    names = [
        n for n, m in model.named_modules() if isinstance(m, nn.Linear) and _wanted(n, targets)
    ]
    if targets is not None and not names:
        raise ValueError(f"targets={targets!r} matched no nn.Linear in the model")
    errors = {}
    for name in names:
        parent, attr = _parent(model, name)
        lin = getattr(parent, attr)
        r = _rank_for(name, lin, rank, blocks)
        layer = EventLinear.from_linear(lin, r, blocks=blocks, threshold=threshold,
                                        latent_threshold=latent_threshold)  # fmt: skip
        layer.execution = execution
        setattr(parent, attr, layer)
        errors[name] = layer.approx_error
    model.conversion_errors = errors
    return model


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


def _rank_for(name: str, lin: nn.Linear, rank, blocks: int) -> int:
    full = min(lin.in_features, lin.out_features)
    if isinstance(rank, dict):
        if name not in rank:
            raise ValueError(f"rank dict has no entry for {name!r}; known: {sorted(rank)}")
        r = rank[name]
    elif isinstance(rank, float):
        if not 0 < rank <= 1:
            raise ValueError(f"rank={rank} as a fraction must be in (0, 1]; or pass an int")
        r = max(1, round(rank * full))
    elif isinstance(rank, int) and not isinstance(rank, bool):
        if rank <= 0:
            raise ValueError(f"rank={rank} must be positive; pass rank>=1")
        r = rank
    else:
        raise TypeError(f"rank must be an int, float or dict, got {type(rank).__name__}")
    r = min(r, full)
    r = max(blocks, r // blocks * blocks)
    if r > full:
        raise ValueError(
            f"layer {name!r} ({lin.in_features}->{lin.out_features}) cannot hold blocks={blocks}; "
            "pass fewer blocks"
        )
    return r
