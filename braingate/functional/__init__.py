"""Pure tensor functions of braingate: no nn.Module, no hidden state."""

from braingate.functional.event_step import event_step, resync
from braingate.functional.events import sigma_delta
from braingate.functional.gating import (
    block_importance,
    blocks_to_units,
    first_k_blocks,
    straight_through,
)
from braingate.functional.lowrank import lowrank_linear, masked_weight, svd_factorize

__all__ = [
    "block_importance",
    "blocks_to_units",
    "event_step",
    "first_k_blocks",
    "lowrank_linear",
    "masked_weight",
    "resync",
    "sigma_delta",
    "straight_through",
    "svd_factorize",
]
