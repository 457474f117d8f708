"""Thin modules that own parameters and call :mod:`braingate.functional`.

``DynamicLowRankLayer`` (``braingate.nn.dynamic``) and ``LoRAven`` (``braingate.nn.loraven``)
compose these with schedulers and estimators, so they are imported from their modules (or from
``braingate``), not from here: ``braingate.nn`` stays below ``scheduling`` and ``energy``.
"""

from braingate.nn import _fusers  # noqa: F401 - registers the compiled lowering of these modules
from braingate.nn.base import EventModule
from braingate.nn.event_blocks import EventResidual
from braingate.nn.event_conv import EventConv1d, EventConv2d
from braingate.nn.event_linear import EventLinear
from braingate.nn.event_rnn import EventGRU, EventGRUCell, EventLSTM, EventLSTMCell
from braingate.nn.lif import LIF

__all__ = [
    "LIF",
    "EventConv1d",
    "EventConv2d",
    "EventGRU",
    "EventGRUCell",
    "EventLSTM",
    "EventLSTMCell",
    "EventLinear",
    "EventModule",
    "EventResidual",
]
