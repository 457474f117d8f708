"""Thin modules that own parameters and call :mod:`braingate.functional`."""

from braingate.nn.event_linear import EventLinear

__all__ = ["EventLinear"]
