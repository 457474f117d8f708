"""The threshold search: every knob is ``base × multiplier``; find multipliers that cost the
fewest synops among those the judge accepts.

``greedy`` (default) first scales all knobs together (×4 while accepted, then bisection in
log), then runs a best-first greedy: every round it tries raising each knob by a factor and keeps
the accepted move that saves the most synops, with smaller factors after. ``front_to_back`` is the
classic alternative (DeltaCNN, REFERENCES §A): raise one knob at a time, in layer order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from braingate.calibration.judge import Verdict
from braingate.calibration.knobs import Knob

__all__ = ["STRATEGIES", "Evaluator", "Point", "search"]

STRATEGIES = ("greedy", "front_to_back")
_FACTORS = (2.0, 1.41, 1.19)


@dataclass(frozen=True)
class Point:
    """A candidate: its multipliers, synops per sample, and the judge's verdict."""

    mults: dict[Knob, float]
    cost: float
    verdict: Verdict


class Evaluator:
    """Counts evaluations against a budget; ``run(mults) -> (synops, verdict)``."""

    def __init__(self, run: Callable[[dict], tuple[float, Verdict]], budget: int) -> None:
        self._run, self.budget, self.used = run, budget, 0

    def __call__(self, mults: dict[Knob, float]) -> Point:
        self.used += 1
        cost, verdict = self._run(mults)
        return Point(dict(mults), cost, verdict)

    @property
    def spent(self) -> bool:
        return self.used >= self.budget


def search(ev: Evaluator, start: Point, strategy: str) -> Point:
    """Shrink ``start`` until accepted (trained thresholds may be too coarse), then search."""
    point = start
    while not point.verdict.feasible and any(point.mults.values()):
        point = ev({k: f / 2 if f > 1e-3 else 0.0 for k, f in point.mults.items()})
    if not point.verdict.feasible:
        return point  # the exact run itself is not accepted: nothing to save safely
    keys = list(point.mults)
    if strategy == "greedy":
        point = _joint_scale(ev, point)
        for factor in _FACTORS:
            point = _best_first(ev, point, factor, keys)
    else:
        for factor in _FACTORS:
            for key in keys:
                point = _best_first(ev, point, factor, [key])
    return point


def _joint_scale(ev: Evaluator, best: Point) -> Point:
    """Scale every knob by one common factor ``c``: ×4 while accepted, then bisect (in log)."""
    start = {k: f if f > 0 else 1.0 for k, f in best.mults.items()}
    lo, hi, c = 0.0, None, 0.25
    while not ev.spent and (hi is None or hi / max(lo, 1e-12) > 1.3):
        trial = ev({k: f * c for k, f in start.items()})
        if trial.verdict.feasible:
            lo = c
            if trial.cost < best.cost:
                best = trial
        else:
            hi = c
        if hi is None:
            c *= 4.0
            if c > 1e4 or best.cost == 0:  # thresholds far above any change: nothing left
                break
        elif lo == 0.0:
            c = hi / 4.0
            if c < 1e-3:
                break
        else:
            c = (lo * hi) ** 0.5
    return best


def _best_first(ev: Evaluator, point: Point, factor: float, keys: list[Knob]) -> Point:
    """Raise, one at a time, the knob in ``keys`` whose accepted move saves the most synops."""
    while not ev.spent:
        best = None
        for key in keys:
            mults = dict(point.mults)
            mults[key] = point.mults[key] * factor if point.mults[key] > 0 else 0.25
            trial = ev(mults)
            if (
                trial.cost < point.cost * 0.999
                and trial.verdict.feasible
                and (best is None or trial.cost < best.cost)
            ):
                best = trial
            if ev.spent:
                break
        if best is None:
            break
        point = best
    return point
