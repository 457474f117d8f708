"""calibrate_thresholds(): choose per-layer event thresholds that minimise synops within a tolerance.

Each EventLinear has two knobs, the input threshold θ and the latent threshold θ_z, each a
multiplier on a base value (the layer's current threshold, per unit if it was learned, or else a
scale measured on the calibration stream). The search first scales all knobs together (doubling,
then bisection), then runs a *best-first greedy*: every round it tries raising each knob by a
factor and keeps the one feasible move that saves the most synops, then refines with smaller
factors. The classic alternative (DeltaCNN, REFERENCES §A) raises knobs one
layer at a time from the front; it is kept as ``strategy="front_to_back"`` for comparison. Both
evaluate candidates with :func:`braingate.simulate` in event mode on the calibration stream.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from braingate.nn.event_linear import EventLinear
from braingate.sim.control import execution
from braingate.sim.simulate import simulate

__all__ = ["CalibrationResult", "calibrate_thresholds"]

_KNOBS = ("threshold", "latent_threshold")
_STRATEGIES = ("greedy", "front_to_back")


@dataclass
class CalibrationResult:
    """What :func:`calibrate_thresholds` chose and what it measured on the calibration stream.

    Attributes:
        thresholds: ``{layer: {"threshold": float | list, "latent_threshold": float | list}}``.
        score: metric at the chosen thresholds; reference_score: at θ = θ_z = 0 (exact).
        synops, dense_synops: per sample, summed over steps and layers, at the chosen thresholds.
        evaluations: event-mode simulations run.
    """

    thresholds: dict = field(default_factory=dict)
    score: float = 0.0
    reference_score: float = 0.0
    synops: float = 0.0
    dense_synops: float = 0.0
    evaluations: int = 0

    @property
    def ratio(self) -> float:
        """``dense_synops / synops`` at the chosen thresholds."""
        return float("inf") if self.synops == 0 else self.dense_synops / self.synops


def _scorer(metric, ys: Tensor | None, readout: str) -> Callable[[Tensor, Tensor], float]:
    """A higher-is-better score of event outputs against labels or the exact outputs."""
    if callable(metric):
        return lambda out, ref: float(metric(out, ys if ys is not None else ref))
    if metric != "accuracy":
        raise ValueError(f"metric={metric!r} is unknown; pass 'accuracy' or a callable")
    if ys is None:  # relative output error against the exact (θ = 0) run, as a negative score
        return lambda out, ref: -float((out - ref).norm() / ref.norm().clamp_min(1e-12))
    if readout not in ("mean", "last"):
        raise ValueError(f"readout={readout!r} is unknown; pass 'mean' or 'last'")

    def acc(out: Tensor, ref: Tensor) -> float:
        if ys.dim() == 2:  # per-step labels (T, B)
            return float((out.argmax(-1) == ys).double().mean())
        logits = out.mean(0) if readout == "mean" else out[-1]
        return float((logits.argmax(-1) == ys).double().mean())

    return acc


def _input_scales(model: nn.Module, xs: Tensor, layers: dict) -> dict:
    """RMS step-to-step change of each layer's input and latent on the exact dense run."""
    seen: dict[str, list[Tensor]] = {n: [] for n in layers}
    B = xs.shape[1]

    def hook(mod, inp, out, name):  # a whole-stream call (T, B, n) or one step (B, n)
        seen[name].append(inp[0].detach().reshape(-1, B, mod.in_features))

    hooks = [m.register_forward_hook(lambda m, i, o, n=n: hook(m, i, o, n))
             for n, m in layers.items()]  # fmt: skip
    try:
        simulate(model, xs, mode="dense")
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for name, layer in layers.items():
        x = torch.cat(seen[name])
        z = x @ layer.V.detach()
        rms = lambda a: float(a.diff(dim=0).pow(2).mean().sqrt()) if a.shape[0] > 1 else 1.0  # noqa: E731
        out[name] = {"threshold": max(rms(x), 1e-6), "latent_threshold": max(rms(z), 1e-6)}
    return out


def calibrate_thresholds(
    model: nn.Module,
    xs: Tensor,
    ys: Tensor | None = None,
    *,
    tolerance: float = 0.01,
    metric: str | Callable[[Tensor, Tensor], float] = "accuracy",
    readout: str = "mean",
    strategy: str = "greedy",
    max_evals: int = 200,
) -> CalibrationResult:
    r"""Set per-layer input and latent thresholds in place that minimise synops within a tolerance.

    .. math::
        \min_{θ, θ_z}\ \mathrm{synops}(θ, θ_z)\quad\text{s.t.}\quad
        \mathrm{score}(θ, θ_z) \ge \mathrm{score}(0, 0) - \mathrm{tolerance}

    Args:
        model: a module with :class:`~braingate.nn.EventLinear` layers (modified in place).
        xs: calibration stream ``(T, B, ...)``.
        ys: labels per sample ``(B,)`` or per step ``(T, B)``; None: the score is minus the
            relative output error ``‖y − y_exact‖ / ‖y_exact‖`` (tolerance = allowed error).
        tolerance: allowed drop of the score (accuracy as a fraction: 0.01 = 1 point).
        metric: ``"accuracy"`` or a callable ``(outputs (T, B, ...), ys or exact outputs) ->
            float`` where higher is better.
        readout: how per-sample labels read the outputs: ``"mean"`` over time or ``"last"`` step.
        strategy: ``"greedy"`` (best saving first, default) or ``"front_to_back"`` (DeltaCNN).
        max_evals: budget of event-mode simulations.

    Returns:
        A :class:`CalibrationResult`; the model keeps the chosen thresholds.
    """
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy={strategy!r} is unknown; pass one of {_STRATEGIES}")
    if not isinstance(tolerance, (int, float)) or isinstance(tolerance, bool) or tolerance < 0:
        raise ValueError(f"tolerance={tolerance!r} must be a number >= 0; pass e.g. 0.01")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, EventLinear)}
    if not layers:
        raise ValueError("model has no EventLinear layer; convert it first with bg.convert(model)")
    if ys is not None and ys.shape[0] not in (xs.shape[1],) and ys.shape[:2] != xs.shape[:2]:
        raise ValueError(f"ys has shape {tuple(ys.shape)}; pass (B,)=({xs.shape[1]},) or (T, B)")
    score = _scorer(metric, ys, readout)
    saved = {n: {k: getattr(m, k) for k in _KNOBS} for n, m in layers.items()}
    scales = _input_scales(model, xs, layers)
    base, mult = {}, {}
    for n in layers:
        for k in _KNOBS:
            cur = torch.as_tensor(saved[n][k]).detach().clone()
            nonzero = bool((cur > 0).any())
            base[n, k] = cur if nonzero else torch.tensor(0.1 * scales[n][k])
            mult[n, k] = 1.0 if nonzero else 0.0
    state = {"evals": 0}

    def apply(mults: dict) -> None:
        for (n, k), f in mults.items():
            v = base[n, k] * f
            setattr(layers[n], k, v if v.dim() else float(v))

    def evaluate(mults: dict) -> tuple[float, float, Tensor]:
        apply(mults)
        out, rep = simulate(model, xs, mode="event")
        state["evals"] += 1
        return rep.total["synops"], rep.total["dense_synops"], out

    with execution(model, "event"):
        _, dense_syn, exact = evaluate(dict.fromkeys(mult, 0.0))
        ref_score = score(exact, exact)
        floor = ref_score - tolerance - 1e-12
        cost, _, out = evaluate(mult)
        while score(out, exact) < floor and any(mult.values()):  # trained θ too coarse: shrink
            mult = {k: f / 2 if f > 1e-3 else 0.0 for k, f in mult.items()}
            cost, _, out = evaluate(mult)
        order = list(mult) if strategy == "greedy" else None
        if strategy == "greedy":  # first all knobs together: a good start in a few evaluations
            cost, mult = _joint_scale(evaluate, score, exact, floor, mult, cost, state, max_evals)
        for factor in (2.0, 1.41, 1.19):
            if strategy == "greedy":
                cost, mult = _best_first(evaluate, score, exact, floor, mult, cost, factor,
                                         order, state, max_evals)  # fmt: skip
            else:
                for key in mult:
                    cost, mult = _best_first(evaluate, score, exact, floor, mult, cost, factor,
                                             [key], state, max_evals)  # fmt: skip
        cost, _, out = evaluate(mult)
    chosen = {n: {k: _plain(getattr(m, k)) for k in _KNOBS} for n, m in layers.items()}
    return CalibrationResult(chosen, score(out, exact), ref_score, cost, dense_syn, state["evals"])


def _joint_scale(evaluate, score, exact, floor, mult, cost, state, max_evals):
    """Scale every knob by one common factor ``c``: double while feasible, then bisect (log)."""
    start = {k: f if f > 0 else 1.0 for k, f in mult.items()}
    lo, hi, best = 0.0, None, (cost, mult)
    c = 0.25
    while state["evals"] < max_evals and (hi is None or hi / max(lo, 1e-12) > 1.3):
        trial = {k: f * c for k, f in start.items()}
        syn, _, out = evaluate(trial)
        if score(out, exact) >= floor:
            lo = c
            if syn < best[0]:
                best = (syn, trial)
        else:
            hi = c
        if hi is None:
            c *= 4.0
            if c > 1e4 or best[0] == 0:  # thresholds far above any change: nothing left to save
                break
        elif lo == 0.0:
            c = hi / 4.0
            if c < 1e-3:
                break
        else:
            c = (lo * hi) ** 0.5
    return best


def _best_first(evaluate, score, exact, floor, mult, cost, factor, keys, state, max_evals):
    """Raise, one at a time, the knob in ``keys`` whose feasible move saves the most synops."""
    while state["evals"] < max_evals:
        best = None
        for key in keys:
            trial = dict(mult)
            trial[key] = mult[key] * factor if mult[key] > 0 else 0.25
            c, _, out = evaluate(trial)
            if c < cost * 0.999 and score(out, exact) >= floor and (best is None or c < best[0]):
                best = (c, trial)
            if state["evals"] >= max_evals:
                break
        if best is None:
            break
        cost, mult = best
    return cost, mult


def _plain(v: float | Tensor) -> float | list:
    if isinstance(v, Tensor):
        return v.detach().cpu().tolist() if v.dim() else float(v)
    return float(v)
