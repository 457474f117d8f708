"""calibrate_thresholds(): per-layer event thresholds that minimise synops within a tolerance
that holds beyond the data they were chosen on."""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from braingate.calibration import judge as J
from braingate.calibration.args import Plan, check_validation, make_plan
from braingate.calibration.knobs import Knob, event_layers, knob_bases, knob_names, plain
from braingate.calibration.result import CalibrationResult, CalibrationWarning
from braingate.calibration.search import Evaluator, Point, search
from braingate.sim.control import execution
from braingate.sim.simulate import simulate

__all__ = ["calibrate_thresholds"]

_BACKOFF = (0.7, 0.5, 0.35, 0.25, 0.12, 0.05, 0.0)  # held-out check failed: scale all knobs
_HEADROOM = 2.0  # automatic headroom when the data cannot resolve the tolerance


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
    headroom: float | None = None,
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
    stream is given); the thresholds it finds are divided by ``headroom``, then checked on the
    held-out data, scaled down until the drop there is within ``tolerance``, and the held-out
    score is reported beside the calibration score. A :class:`CalibrationWarning` says when the
    data cannot resolve the tolerance (the search is then strict — no sample may be lost — and
    the thresholds are halved), when a class has no sample, and when the held-out check forced
    a back-off.

    Args:
        model: a module with event layers (:class:`~braingate.nn.base.EventModule`); their
            ``threshold_names`` attributes are modified in place.
        xs: calibration stream ``(T, B, ...)``. The guarantee is about data distributed like
            it: streams the network was trained on sit deeper inside its decision regions than
            unseen ones (a recurrent network that has memorised them most of all), so pass
            streams it was not trained on where you have them (here or as ``validation``).
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
        headroom: the thresholds the search finds are divided by this (``>= 1``): a margin in
            threshold space, the counterpart of ``safety``'s margin on the outputs. A network
            can respond abruptly to a small change of its thresholds (a recurrent state tipping
            to another attractor, a decision flipping between two calibration samples' critical
            thresholds) and a sample the calibration data lacks can sit just below the
            thresholds found, which no output margin foresees. None (default): 2 when the data
            cannot resolve the tolerance (few samples: the strict search), 1 otherwise.
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
    plan = make_plan(xs, ys, tolerance=tolerance, metric=metric, readout=readout,
                     strategy=strategy, max_evals=max_evals, holdout=holdout,
                     confidence=confidence, safety=safety, seed=seed,
                     headroom=headroom)  # fmt: skip
    layers = event_layers(model)
    if not layers:
        raise ValueError("model has no event layer; convert it first with bg.convert(model)")
    hold = check_validation(validation, xs, ys, plan)
    saved = {n: {k: getattr(m, k) for k in knob_names(m)} for n, m in layers.items()}
    try:
        with execution(model, "event"):
            return _calibrate(model, layers, xs, ys, hold, plan)
    except BaseException:
        for n, knobs in saved.items():
            for k, v in knobs.items():
                setattr(layers[n], k, v)
        raise


def _calibrate(model, layers, xs, ys, hold, plan: Plan) -> CalibrationResult:
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
    room = plan.headroom
    if room is None:
        room = 1.0 if judge.resolvable and plan.tolerance > 0 else _HEADROOM
    if not judge.resolvable and plan.tolerance > 0:
        warn(_unresolved(judge, plan, room))

    def candidate(mults: dict[Knob, float]) -> tuple[float, J.Verdict]:
        out, tot = run(xs, mults)
        return tot["synops"], judge(out)

    # the exact run and the check on held-out data; the run at the thresholds / headroom
    reserve = (2 if hold is not None else 0) + (room > 1.0)
    ev = Evaluator(candidate, max(plan.max_evals - evals[0] - reserve, 1))
    point = search(ev, ev(start), plan.strategy)
    if room > 1.0 and any(point.mults.values()):
        mults = {k: f / room for k, f in point.mults.items()}
        point = Point(mults, *candidate(mults))

    res = CalibrationResult(dense_synops=total["dense_synops"], warnings=notes, headroom=room)
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


def _check_held_out(point, hold, res, plan: Plan, run, candidate, zero, warn) -> Point:
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
    if factor < 0.5:  # a mild back-off is routine; a deep one means the data disagree
        warn(
            f"the thresholds found on the calibration part (estimated drop "
            f"{point.verdict.drop:.4f} there) failed the held-out check at tolerance="
            f"{plan.tolerance}; scaled them down x{factor:.2f} to pass it. The calibration data "
            "is too small or unlike the held-out part: pass more samples or a validation stream"
        )
    cost, verdict = candidate(mults)
    return Point(mults, cost, verdict)


def _caller_level() -> int:
    """``stacklevel`` of the first frame outside this package (where the user called us)."""
    here, level, f = os.path.dirname(__file__), 1, sys._getframe(1)
    while f.f_back is not None and f.f_code.co_filename.startswith(here):
        f, level = f.f_back, level + 1
    return level


# -- data -----------------------------------------------------------------------------------------
def _split(xs: Tensor, ys, plan: Plan, warn):
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


def _unresolved(judge, plan: Plan, room: float) -> str:
    n = judge.units
    if isinstance(judge, J.DecisionJudge):
        # fewest decisions after which no loss bounds the loss rate by the tolerance
        need = math.ceil(math.log(1.0 - plan.confidence) / math.log1p(-min(plan.tolerance, 0.5)))
        # one-sided upper bound on a loss rate after 0 losses in n trials (Clopper-Pearson)
        bound = 1.0 - (1.0 - plan.confidence) ** (1.0 / n)
        return (
            f"the calibration data gives {n} decisions: one is {100 / n:.2g} points, so a drop of "
            f"tolerance={plan.tolerance} cannot be told from sampling noise at confidence="
            f"{plan.confidence} (that needs >= {need} decisions). The search is strict instead: "
            f"no decision may change or lose more than {1 / plan.safety:.0%} of its margin"
            + (f", and the thresholds found are divided by headroom={room:g}" if room > 1 else "")
            + f"; even so, a drop of up to {bound:.1%} on unseen data cannot be ruled out at that "
            "confidence. Pass more samples or a larger tolerance"
        )
    return (
        f"the calibration data has {n} sample: no estimate of the metric's sampling noise, so "
        "the tolerance holds on this sample only. Pass more samples"
    )
