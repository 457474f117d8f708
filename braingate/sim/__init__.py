"""Run networks over streams and count what they compute and skip."""

from braingate.sim.calibrate import calibrate
from braingate.sim.control import execution, reset
from braingate.sim.fused import EventChain, compile_events
from braingate.sim.report import COUNTERS, Report
from braingate.sim.simulate import simulate

__all__ = [
    "COUNTERS",
    "EventChain",
    "Report",
    "calibrate",
    "compile_events",
    "execution",
    "reset",
    "simulate",
]
