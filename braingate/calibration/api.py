"""calibrate_thresholds(): per-layer event thresholds that minimise synops within a tolerance
that holds beyond the data they were chosen on."""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import torch
from torch import Tensor, nn

from braingate.calibration import judge as J
from braingate.calibration.knobs import Knob, event_layers, knob_bases, knob_names, plain
from braingate.calibration.result import CalibrationResult, CalibrationWarning
from braingate.calibration.search import STRATEGIES, Evaluator, Point, search
from braingate.sim.control import execution
from braingate.sim.simulate import simulate

__all__ = ["calibrate_thresholds"]

_METRICS = ("accuracy", "agreement")
_BACKOFF = (0.7, 0.5, 0.35, 0.25, 0.12, 0.05, 0.0)  # held-out check failed: scale all knobs


@dataclass(frozen=True)
class _Plan:
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

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(self.confidence)

    @property
    def labelled(self) -> bool:
        return self.kind is not None and self.metric == "accuracy"

    def judge(self, exact: Tensor, ys: Tensor | None, seed: int):
        """The judge of candidates on one part of the data (its exact outputs and targets)."""
        return _judge(exact, ys, self, seed)


def calibrate_thresholds(
    model: nn.Module,
    xs: Tensor,
    ys: Tensor | None = None,
    *,
    tolerance: float = 0.01,
    metric: str | Callable[[Tensor, Tensor], float] = "accuracy",
    readout: str | Callable[[Tensor], Tensor] | None = None,
    strategy: str = "greedy",
    max_evals: int = 200,
    validation: Tensor | tuple[Tensor, Tensor] | None = None,
    holdout: float = 0.25,
    confidence: float = 0.9,
    safety: float = 2.0,
    seed: int = 0,
) -> CalibrationResult:
    r"""Set every event layer's thresholds (in place) to spend the fewest synops while the
    decisions the user makes stay within ``tolerance`` — on data the search did not see.

    .. math::
        \min_{θ}\ \mathrm{synops}(θ)\quad\text{s.t.}\quad
        \widehat{\mathrm{drop}}(θ) + z\,\widehat{\mathrm{SE}}(θ) \le \mathrm{tolerance}

    The drop is judged on the decision (``readout``) against the labels, counting a sample
    whose decision margin shrank by more than ``1/safety`` as lost, with a noise margin of
    ``z = Φ⁻¹(confidence)`` standard errors (:mod:`braingate.calibration.judge`). The search runs on
    ``xs`` less a stratified ``holdout`` fraction (or on all of ``xs`` when a ``validation``
    stream is given); the chosen thresholds are then checked on the held-out data, scaled down
    until the drop there is within ``tolerance``, and the held-out score is reported beside the
    calibration score. A :class:`CalibrationWarning` says when the data cannot resolve the
    tolerance (the search is then strict: no sample may be lost), when a class has no sample,
    and when the held-out check forced a back-off.

    Args:
        model: a module with event layers (:class:`~braingate.nn.base.EventModule`); their
            ``threshold_names`` attributes are modified in place.
        xs: calibration stream ``(T, B, ...)``.
        ys: labels per sample ``(B,)`` or per step ``(T, B)``; None: the relative output error
            ``‖y − y_exact‖ / ‖y_exact‖`` is judged (``tolerance`` = allowed error), or the
            agreement with the exact model's decisions (``metric="agreement"``).
        tolerance: allowed drop of the score (accuracy as a fraction: 0.01 = 1 point).
        metric: ``"accuracy"`` (labels; relative output error without them), ``"agreement"``
            (decisions of the exact model as labels), or a callable ``(outputs (T, B, ...), ys or
            exact outputs) -> float``, higher is better, given the batch's samples (its noise
            margin is a paired bootstrap over samples).
        readout: how outputs ``(T, B, C)`` become decisions: ``"mean"`` over time, ``"last"``
            step, ``"step"`` (one decision per step; the default for ``(T, B)`` labels), or a
            callable returning per-sample logits ``(B, C)``. None: ``"mean"`` for per-sample
            labels, ``"step"`` for per-step ones, every output for the relative error.
        strategy: ``"greedy"`` (best saving first, default) or ``"front_to_back"`` (DeltaCNN).
        max_evals: event-mode simulations in all; the back-off after a failed held-out check
            may add up to 8.
        validation: a held-out stream ``(xs_val, ys_val)`` (or ``xs_val`` when ``ys`` is None)
            used for the check instead of a part of ``xs``.
        holdout: fraction of ``xs``'s samples held out for the check (stratified by label);
            ``0`` searches on everything and checks nothing.
        confidence: one-sided confidence of the noise margin, in ``[0.5, 1)``; 0.5 means no
            margin.
        safety: a correct sample counts as lost once its decision margin shrinks by more than
            ``1/safety`` (``1``: only when it flips).
        seed: seed of the held-out split and of the bootstrap.

    Returns:
        A :class:`CalibrationResult`; the model keeps the chosen thresholds (on any error the
        thresholds it had are restored).

    Example:
        >>> import torch, braingate as bg
        >>> _ = torch.manual_seed(0)
        >>> net = bg.convert(torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(),
        ...                                      torch.nn.Linear(16, 3)), rank=3)
        >>> xs = torch.randn(12, 200, 4).cumsum(0) * 0.2
        >>> res = bg.calibrate_thresholds(net, xs, metric="agreement", tolerance=0.05)
        >>> res.samples, res.holdout_samples, res.holdout_drop <= 0.05, res.ratio > 1
        (150, 50, True, True)
    """
    _check_numbers(tolerance, max_evals, holdout, confidence, safety, seed)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is unknown; pass one of {STRATEGIES}")
    layers = event_layers(model)
    if not layers:
        raise ValueError("model has no event layer; convert it first with bg.convert(model)")
    kind = _check_stream("xs", "ys", xs, ys, metric)
    plan = _Plan(kind, _check_readout(readout, kind, metric), metric, float(tolerance), strategy,
                 max_evals, float(holdout), float(confidence), float(safety), seed)  # fmt: skip
    hold = _check_validation(validation, xs, ys, plan)
    saved = {n: {k: getattr(m, k) for k in knob_names(m)} for n, m in layers.items()}
    try:
        with execution(model, "event"):
            return _calibrate(model, layers, xs, ys, hold, plan)
    except BaseException:
        for n, knobs in saved.items():
            for k, v in knobs.items():
                setattr(layers[n], k, v)
        raise


def _calibrate(model, layers, xs, ys, hold, plan: _Plan) -> CalibrationResult:
    notes: list[str] = []

    def warn(msg: str) -> None:
        notes.append(msg)
        warnings.warn(msg, CalibrationWarning, stacklevel=_caller_level())

    all_ys, internal = ys, hold is None
    if internal and plan.holdout > 0:
        hold, xs, ys = _split(xs, ys, plan, warn)
    start = {(n, k): 1.0 if bool((torch.as_tensor(getattr(m, k)) > 0).any()) else 0.0
             for n, m in layers.items() for k in knob_names(m)}  # fmt: skip
    bases = knob_bases(model, xs, layers)
    evals = [0]

    def apply(mults: dict[Knob, float]) -> None:
        for (n, k), f in mults.items():
            v = bases[n, k] * f
            setattr(layers[n], k, v if v.dim() else float(v))

    def run(data: Tensor, mults: dict[Knob, float]) -> tuple[Tensor, dict]:
        apply(mults)
        evals[0] += 1
        out, rep = simulate(model, data, mode="event")
        return out, rep.total

    zero = dict.fromkeys(bases, 0.0)
    exact, total = run(xs, zero)
    judge = plan.judge(exact, ys, plan.seed)
    if plan.labelled:
        _missing_classes(all_ys, judge.classes, "xs", warn)
    if not judge.resolvable and plan.tolerance > 0:
        warn(_unresolved(judge, plan))

    def candidate(mults: dict[Knob, float]) -> tuple[float, J.Verdict]:
        out, tot = run(xs, mults)
        return tot["synops"], judge(out)

    reserve = 2 if hold is not None else 0  # the exact run and the check on held-out data
    ev = Evaluator(candidate, max(plan.max_evals - evals[0] - reserve, 1))
    point = search(ev, ev(start), plan.strategy)

    res = CalibrationResult(dense_synops=total["dense_synops"], warnings=notes)
    if hold is not None:
        if plan.labelled and not internal:
            _missing_classes(hold[1], judge.classes, "validation", warn)
        point = _check_held_out(point, hold, res, plan, run, candidate, zero, warn)
    apply(point.mults)
    res.thresholds = {n: {k: plain(getattr(m, k)) for k in knob_names(m)}
                      for n, m in layers.items()}  # fmt: skip
    res.score, res.reference_score = point.verdict.score, judge.reference_score
    res.samples, res.margin, res.evaluations = judge.units, point.verdict.margin, evals[0]
    res.synops = point.cost
    if internal and hold is not None:  # per sample over all of xs: both parts, weighted
        n_s, n_h = xs.shape[1], hold[0].shape[1]
        res.synops = (n_s * point.cost + n_h * res.holdout_synops) / (n_s + n_h)
    return res


def _check_held_out(point, hold, res, plan: _Plan, run, candidate, zero, warn) -> Point:
    """Judge ``point`` on the held-out data; scale its knobs down until the drop there is
    within the tolerance. Fills the ``holdout_*`` fields of ``res``."""
    h_exact, _ = run(hold[0], zero)
    h_judge = plan.judge(h_exact, hold[1], plan.seed + 1)
    for factor in (1.0, *_BACKOFF):
        mults = {k: f * factor for k, f in point.mults.items()}
        out, tot = run(hold[0], mults)
        verdict = h_judge(out)
        if verdict.within:
            break
    res.holdout_score, res.holdout_reference_score = verdict.score, h_judge.reference_score
    res.holdout_synops, res.holdout_samples, res.backoff = tot["synops"], h_judge.units, factor
    if factor == 1.0:
        return point
    warn(
        f"the thresholds found on the calibration part lost {point.verdict.drop:.4f} there but "
        f"failed the held-out check (tolerance={plan.tolerance}); scaled them down x{factor:.2f} "
        "to pass it. The calibration data is too small or unlike the held-out part: pass more "
        "samples or a validation stream"
    )
    cost, verdict = candidate(mults)
    return Point(mults, cost, verdict)


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside this package (where the user called us)."""
    here, level, f = os.path.dirname(__file__), 1, sys._getframe(1)
    while f.f_back is not None and f.f_code.co_filename.startswith(here):
        f, level = f.f_back, level + 1
    return level


# -- arguments ------------------------------------------------------------------------------------
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
    if not callable(metric) and metric not in _METRICS:
        raise ValueError(f"metric={metric!r} is unknown; pass one of {_METRICS} or a callable")
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


def _check_validation(validation, xs: Tensor, ys, plan: _Plan):
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


# -- data -----------------------------------------------------------------------------------------
def _split(xs: Tensor, ys, plan: _Plan, warn):
    """Hold out a fraction of the samples (stratified by label): ``(hold, xs_rest, ys_rest)``."""
    B, frac = xs.shape[1], plan.holdout
    g = torch.Generator().manual_seed(plan.seed)
    groups = [torch.arange(B)]
    if plan.kind == "sample" and ys.dim() == 1 and not ys.is_floating_point():
        groups = [torch.nonzero(ys.cpu() == c).flatten() for c in ys.cpu().unique()]
    held = []
    for idx in groups:
        k = min(int(frac * len(idx) + 0.5), len(idx) - 1)
        held.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    h = torch.cat(held).sort().values
    if len(h) == 0:
        warn(
            f"xs has {B} sample(s): too few to hold out holdout={frac}; nothing is checked on "
            "unseen data. Pass validation=(xs_val, ys_val) or more samples"
        )
        return None, xs, ys
    mask = torch.ones(B, dtype=torch.bool)
    mask[h] = False
    r = torch.nonzero(mask).flatten()
    dim = 0 if plan.kind == "sample" else 1

    def take(i: Tensor) -> tuple[Tensor, Tensor | None]:
        y = None if ys is None else ys.index_select(dim, i.to(ys.device))
        return xs.index_select(1, i.to(xs.device)), y

    return take(h), *take(r)


def _judge(exact: Tensor, ys: Tensor | None, plan: _Plan, seed: int):
    tol, z = plan.tolerance, plan.z
    if callable(plan.metric):
        target = exact if ys is None else ys
        dim = 0 if plan.kind == "sample" else 1
        return J.MetricJudge(plan.metric, exact, target, dim, tol, z, seed)
    if plan.metric == "agreement":
        return J.DecisionJudge(exact, None, plan.decide, tol, z, plan.safety)
    if ys is None:
        return J.ErrorJudge(exact, plan.decide, tol, z, seed)
    labels = ys
    if plan.kind == "sample" and _is_step(plan.decide):
        labels = ys.expand(exact.shape[0], -1)
    judge = J.DecisionJudge(exact, labels, plan.decide, tol, z, plan.safety)
    bad = labels[(labels < 0) | (labels >= judge.classes)]
    if bad.numel():
        raise ValueError(
            f"ys holds label {int(bad[0])} but the model gives {judge.classes} class scores; "
            f"pass labels in [0, {judge.classes})"
        )
    return judge


def _is_step(decide) -> bool:
    probe = torch.zeros(2, 3, 4)
    try:
        return decide(probe).shape[0] == 6
    except Exception:  # a user readout that cannot take the probe: per-sample decisions
        return False


def _missing_classes(labels: Tensor, classes: int, where: str, warn) -> None:
    present = set(labels.reshape(-1).unique().tolist())
    missing = [c for c in range(classes) if c not in present]
    if missing:
        shown = ", ".join(map(str, missing[:12])) + (", ..." if len(missing) > 12 else "")
        warn(
            f"{where} has no sample of {len(missing)} of {classes} classes ({shown}): the "
            "thresholds are not checked on them, and their accuracy may fall by more than the "
            "tolerance. Pass calibration data with every class"
        )


def _unresolved(judge, plan: _Plan) -> str:
    n = judge.units
    if isinstance(judge, J.DecisionJudge):
        need = math.ceil(plan.z / plan.tolerance)
        return (
            f"the calibration data gives {n} decisions: one is {100 / n:.2g} points, so a drop of "
            f"tolerance={plan.tolerance} cannot be told from sampling noise at confidence="
            f"{plan.confidence} (that needs >= {need} decisions). The search is strict instead: "
            f"no decision may change or lose more than {1 / plan.safety:.0%} of its margin. Pass "
            "more samples or a larger tolerance"
        )
    return (
        f"the calibration data has {n} sample: no estimate of the metric's sampling noise, so "
        "the tolerance holds on this sample only. Pass more samples"
    )
