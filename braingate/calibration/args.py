"""Arguments of calibrate_thresholds(), checked once at the boundary: each bad value is refused
with the argument, the value and the fix, before anything is changed. What passes becomes a
:class:`Plan` (typed choices, no strings re-validated further down)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import torch
from torch import Tensor

from braingate.calibration import judge as J
from braingate.calibration.search import STRATEGIES

__all__ = ["Plan", "check_validation", "make_plan"]

METRICS = ("accuracy", "agreement")


@dataclass(frozen=True)
class Plan:
    """The validated arguments of one call."""

    kind: str | None  # targets: None, "sample" (B,), "step" (T, B)
    decide: Callable[[Tensor], Tensor] | None  # decision readout; None: every output
    metric: str | Callable[[Tensor, Tensor], float]
    tolerance: float
    strategy: str
    max_evals: int
    holdout: float
    confidence: float
    safety: float
    seed: int
    headroom: float | None = None  # None: automatic (see calibrate_thresholds)

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(self.confidence)

    @property
    def labelled(self) -> bool:
        return self.kind is not None and self.metric == "accuracy"

    def judge(self, exact: Tensor, ys: Tensor | None, seed: int):
        """The judge of candidates on one part of the data (its exact outputs and targets)."""
        tol, z = self.tolerance, self.z
        if callable(self.metric):
            target = exact if ys is None else ys
            dim = 0 if self.kind == "sample" else 1
            return J.MetricJudge(self.metric, exact, target, dim, tol, z, seed)
        if self.metric == "agreement":
            return J.DecisionJudge(exact, None, self.decide, tol, z, self.safety)
        if ys is None:
            return J.ErrorJudge(exact, self.decide, tol, z, seed)
        labels = ys
        if self.kind == "sample" and _is_step(self.decide):
            labels = ys.expand(exact.shape[0], -1)
        judge = J.DecisionJudge(exact, labels, self.decide, tol, z, self.safety)
        bad = labels[(labels < 0) | (labels >= judge.classes)]
        if bad.numel():
            raise ValueError(
                f"ys holds label {int(bad[0])} but the model gives {judge.classes} class scores; "
                f"pass labels in [0, {judge.classes})"
            )
        return judge


def make_plan(xs, ys, *, tolerance, metric, readout, strategy, max_evals, holdout, confidence,
              safety, seed, headroom=None) -> Plan:  # fmt: skip
    """Check every argument of calibrate_thresholds except the model and ``validation``."""
    _check_numbers(tolerance, max_evals, holdout, confidence, safety, seed)
    if headroom is not None:
        hr = _real("headroom", headroom)
        if not math.isfinite(hr) or hr < 1.0:
            raise ValueError(
                f"headroom={headroom!r} must be a finite number >= 1 (the factor the found "
                "thresholds are divided by; 1: none), or None for the automatic choice; pass "
                "e.g. headroom=2"
            )
        headroom = hr
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is unknown; pass one of {STRATEGIES}")
    kind = _check_stream("xs", "ys", xs, ys, metric)
    decide = _check_readout(readout, kind, metric)
    return Plan(kind, decide, metric, float(tolerance), strategy, max_evals, float(holdout),
                float(confidence), float(safety), seed, headroom)  # fmt: skip


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _check_numbers(tolerance, max_evals, holdout, confidence, safety, seed) -> None:
    tol = _real("tolerance", tolerance)
    if not math.isfinite(tol) or tol < 0:
        raise ValueError(
            f"tolerance={tolerance!r} must be a finite number >= 0 (the allowed drop of the "
            "score); pass e.g. tolerance=0.01 for one accuracy point"
        )
    if isinstance(max_evals, bool) or not isinstance(max_evals, int):
        raise TypeError(f"max_evals must be an int, got {type(max_evals).__name__} {max_evals!r}")
    if max_evals < 1:
        raise ValueError(
            f"max_evals={max_evals} must be >= 1 (event-mode simulations to spend); pass e.g. "
            "max_evals=200"
        )
    h = _real("holdout", holdout)
    if not 0.0 <= h <= 0.9:
        raise ValueError(
            f"holdout={holdout!r} must be a fraction in [0, 0.9] of the samples held out for the "
            "check; pass e.g. holdout=0.25, or 0 with a validation stream"
        )
    c = _real("confidence", confidence)
    if not 0.5 <= c < 1.0:
        raise ValueError(
            f"confidence={confidence!r} must be in [0.5, 1) (0.5: no noise margin); pass e.g. "
            "confidence=0.9"
        )
    s = _real("safety", safety)
    if not math.isfinite(s) or s < 1.0:
        raise ValueError(
            f"safety={safety!r} must be a finite number >= 1 (1: a sample is lost only when its "
            "decision flips); pass e.g. safety=2"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")


def _check_stream(xname: str, yname: str, xs, ys, metric) -> str | None:
    """Validate a stream and its targets; returns the targets' kind: None, "sample", "step"."""
    if not isinstance(xs, Tensor):
        raise TypeError(f"{xname} must be a torch.Tensor (T, B, ...), got {type(xs).__name__}")
    if xs.dim() < 2 or xs.shape[0] == 0 or xs.shape[1] == 0:
        raise ValueError(
            f"{xname} has shape {tuple(xs.shape)}; pass a time-first stream (T, B, ...) with "
            "T, B >= 1"
        )
    if not callable(metric) and metric not in METRICS:
        raise ValueError(f"metric={metric!r} is unknown; pass one of {METRICS} or a callable")
    if ys is None:
        return None
    if metric == "agreement":
        raise ValueError(
            "metric='agreement' judges against the exact model's own decisions; pass ys=None, "
            "or metric='accuracy' to judge against the labels"
        )
    if not isinstance(ys, Tensor):
        raise TypeError(f"{yname} must be a torch.Tensor or None, got {type(ys).__name__}")
    T, B = xs.shape[:2]
    if ys.dim() >= 2 and tuple(ys.shape[:2]) == (T, B) and (callable(metric) or ys.dim() == 2):
        kind = "step"
    elif ys.dim() >= 1 and ys.shape[0] == B and (callable(metric) or ys.dim() == 1):
        kind = "sample"
    else:
        raise ValueError(
            f"{yname} has shape {tuple(ys.shape)}; pass labels per sample (B,)=({B},) or per "
            f"step (T, B)=({T}, {B}) for {xname} of shape {tuple(xs.shape)}"
        )
    if not callable(metric) and (ys.is_floating_point() or ys.is_complex()):
        raise TypeError(f"{yname} must hold integer class labels, got {ys.dtype}; pass ys.long()")
    return kind


def _check_readout(readout, kind: str | None, metric) -> Callable[[Tensor], Tensor] | None:
    """The decision readout (None: judge every output)."""
    if readout is not None and not callable(readout) and readout not in J.READOUTS:
        raise ValueError(
            f"readout={readout!r} is unknown; pass one of {J.READOUTS} or a callable mapping "
            "outputs (T, B, C) to logits (B, C)"
        )
    if callable(metric):
        return None  # the metric reads the outputs itself
    if kind == "step" and readout is not None and readout != "step":
        raise ValueError(
            f"readout={readout!r} makes one decision per sample but ys holds per-step labels "
            "(T, B); pass ys of shape (B,) (one label per sample) or readout='step'"
        )
    if readout is None:
        if kind is None and metric == "accuracy":
            return None  # relative error of every output
        readout = "step" if kind == "step" else "mean"
    if kind is None and metric == "accuracy" and readout == "step":
        return None
    return J.decision_readout(readout)


def check_validation(validation, xs: Tensor, ys, plan: Plan):
    """``(xs_val, ys_val)`` (``ys_val`` None without labels), or None."""
    if validation is None:
        return None
    if isinstance(validation, Tensor):
        xv, yv = validation, None
    elif isinstance(validation, (tuple, list)) and len(validation) == 2:
        xv, yv = validation
    else:
        raise TypeError(
            f"validation must be (xs_val, ys_val) or xs_val, got {type(validation).__name__}"
        )
    if (ys is None) != (yv is None):
        fix = "(xs_val, ys_val) with labels, as ys was given" if ys is not None else "xs_val alone"
        raise ValueError(f"validation must match the calibration data; pass {fix}")
    vkind = _check_stream("validation[0]", "validation[1]", xv, yv, plan.metric)
    if isinstance(xv, Tensor) and (xv.shape[2:] != xs.shape[2:] or xv.dtype != xs.dtype):
        raise ValueError(
            f"validation stream has shape {tuple(xv.shape)} and dtype {xv.dtype}; pass (T', B', "
            f"{', '.join(map(str, xs.shape[2:]))}) of dtype {xs.dtype} like xs"
        )
    if vkind != plan.kind:
        raise ValueError(
            f"validation labels are per {vkind} but ys is per {plan.kind}; pass the same kind of "
            "labels"
        )
    return xv, yv


def _is_step(decide) -> bool:
    probe = torch.zeros(2, 3, 4)
    try:
        return decide(probe).shape[0] == 6
    except Exception:  # a user readout that cannot take the probe: per-sample decisions
        return False
