"""Converting torch recurrent layers to delta recurrent event layers.

``nn.GRU`` -> :class:`~braingate.nn.event_rnn.EventGRU`, ``nn.LSTM`` -> ``EventLSTM``,
``nn.GRUCell`` / ``nn.LSTMCell`` -> their event cells, by truncated SVD of every ``W_ih`` and
``W_hh``; importing this module registers them in :data:`braingate.convert.CONVERTERS`.
The converted module takes the same call and returns the same thing in dense mode, so a model
whose forward calls ``self.gru(xs)`` keeps working.

A recurrent module has several factors of different full ranks (layer 0's input factor
``min(n, G·H)``, every other factor ``H``); ``convert``'s per-layer rank is its request for every
factor, capped at each one's full rank and rounded down to a multiple of the blocks. When a factor
cannot hold the requested blocks, the module gets the most blocks every factor can hold. Each
adjustment is listed in the new module's ``conversion_adjustments`` (to be merged into
``model.conversion_report``). ``convert``'s ``threshold`` sets both θ (input) and θ_h (hidden
state); refused: bidirectional modules and LSTMs with ``proj_size`` (they stay dense, reported).
"""

from __future__ import annotations

from torch import Tensor, nn

from braingate.convert import CONVERTERS, Converter
from braingate.functional.rnn_events import GATES
from braingate.nn.event_rnn import EventGRU, EventGRUCell, EventLSTM, EventLSTMCell

__all__ = ["CONVERTERS_RNN", "build", "full_rank", "plan_ranks", "refusal"]

_TARGET = {nn.GRU: EventGRU, nn.LSTM: EventLSTM, nn.GRUCell: EventGRUCell,
           nn.LSTMCell: EventLSTMCell}  # fmt: skip


def _target(mod: nn.Module) -> type:
    for cls in type(mod).__mro__:
        if cls in _TARGET:
            return _TARGET[cls]
    raise TypeError(f"no recurrent event layer for {type(mod).__name__}")


def refusal(mod: nn.Module) -> str:
    """Why ``mod`` cannot become a recurrent event layer ("" if it can)."""
    if getattr(mod, "bidirectional", False):
        return "bidirectional=True (event layers run forward in time)"
    if getattr(mod, "proj_size", 0):
        return f"proj_size={mod.proj_size} (LSTM projections are not supported yet)"
    return ""


def _caps(mod: nn.Module) -> list[tuple[int, int]]:
    """Full rank of every factor, ``[(input, hidden)]`` per layer."""
    G = GATES[_target(mod).cell]
    n, H = mod.input_size, mod.hidden_size
    layers = getattr(mod, "num_layers", 1)
    return [(min(n if k == 0 else H, G * H), H) for k in range(layers)]


def full_rank(mod: nn.Module) -> int:
    """The largest full rank of the module's factors (what an int or fractional rank of
    ``convert`` refers to)."""
    return max(max(c) for c in _caps(mod))


def plan_ranks(mod: nn.Module, rank: int, blocks: int) -> tuple[list[tuple[int, int]], int, list]:
    """Per-layer ``(r_ih, r_hh)``, the blocks and the adjustments for a requested ``rank``."""
    caps = _caps(mod)
    notes = []
    smallest = min(min(c) for c in caps)
    b = blocks
    if b > min(rank, smallest):
        b = min(rank, smallest)
        notes.append(f"blocks {blocks} reduced to {b}: the smallest factor holds rank "
                     f"{min(rank, smallest)}")  # fmt: skip
    ranks = []
    for k, (ci, ch) in enumerate(caps):
        pair = []
        for side, cap in (("input", ci), ("hidden", ch)):
            r = min(rank, cap)
            if r < rank:
                notes.append(f"layer {k} {side} factor: rank {rank} capped at its full rank {cap}")
            if r % b:
                notes.append(f"layer {k} {side} factor: rank {r} rounded down to {r // b * b}, "
                             f"a multiple of blocks={b}")  # fmt: skip
                r = r // b * b
            pair.append(r)
        ranks.append((pair[0], pair[1]))
    return ranks, b, notes


def build(mod: nn.Module, rank: int, blocks: int, threshold: float | Tensor,
          latent_threshold: float | Tensor) -> nn.Module:  # fmt: skip
    """The event layer of ``mod`` (``approx_error``: the largest relative Frobenius error of
    its factors; ``conversion_adjustments``: what :func:`plan_ranks` changed)."""
    why = refusal(mod)
    if why:
        raise ValueError(f"{type(mod).__name__} cannot convert: {why}")
    cls = _target(mod)
    ranks, b, notes = plan_ranks(mod, rank, blocks)
    kw = {"blocks": b, "threshold": threshold, "hidden_threshold": threshold,
          "latent_threshold": latent_threshold}  # fmt: skip
    if isinstance(threshold, Tensor) and threshold.dim() == 1:
        kw["hidden_threshold"] = float(threshold.mean())  # per input unit: not per hidden unit
        notes.append("per-unit threshold applies to the input; hidden_threshold = its mean")
    if isinstance(latent_threshold, Tensor) and latent_threshold.dim() == 1:
        kw["latent_threshold"] = float(latent_threshold.mean())
        notes.append("per-unit latent_threshold replaced by its mean (factors differ in rank)")
    new = cls._from_torch(mod, ranks if not cls.is_cell else ranks[0], **kw)
    new.conversion_adjustments = notes
    return new


def absorbs(mod: nn.Module, nxt: nn.Module | None) -> bool:
    """Recurrent layers fold nothing into their weights."""
    return False


#: torch type -> ``(full_rank, build, absorbs, fold, refusal)``: the rows in ``CONVERTERS``.
CONVERTERS_RNN = {t: (full_rank, build, absorbs, None, refusal) for t in _TARGET}
for _t, _row in CONVERTERS_RNN.items():
    CONVERTERS.add(_t, Converter(*_row))
