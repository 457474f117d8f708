"""End-to-end training of event networks: one recipe from weights to learned thresholds.

Convert → calibrate → fine-tune starts from a trained dense model and can at best keep its
accuracy. :func:`train_events` trains the event network itself, from scratch or from a converted
model, with the regularisation and schedule that sigma-delta training recipes use:

1. *Dense phase* (``recipe.dense_epochs``): the event network at θ = 0 computes exactly its
   dense path (DESIGN §2), so its weights are first trained on the dense path — one batched call
   over the whole sequence, cheap — with input dropout, label smoothing, decoupled weight decay
   and the learning-rate schedule.
2. *Event phase* (``epochs``): thresholds become learnable per unit (surrogate gradients,
   :func:`~braingate.functional.surrogate.sigma_delta_surrogate`), started at
   ``recipe.threshold_init`` × the RMS step-to-step change of what each threshold gates, and the
   network steps through its differentiable event path (:func:`~braingate.train.events_in_loop.
   rollout`) with the activity penalty of :meth:`~braingate.train.events_in_loop.EventTape.penalty`.
   The activity budget is annealed geometrically from ``budget_start`` to ``budget``, so the
   weights adapt while the thresholds rise:

.. math::
    \\mathcal L = \\mathrm{CE}_{\\text{smooth}}\\big(\\mathrm{readout}(y_{1..T}), c\\big)
      + λ\\,\\max\\Big(0,\\ \\frac{\\sum_{t,\\ell} |E|R + |L|m}{\\sum_{t,\\ell} nm} - b_k\\Big),
    \\qquad b_k = b_0\\,(b/b_0)^{\\min(1,\\ k / (a K))}

with ``k`` the event epoch, ``K = epochs`` and ``a = recipe.anneal``. One optimizer (AdamW)
runs through both phases (the thresholds join it at the event phase); within each phase the
learning rate warms up linearly, then follows a cosine to 0 (or stays constant).

Input dropout draws one mask per stream and feature for the whole stream (a mask redrawn every
step would make dropped inputs flicker: events the network never sees at inference), and only in
the dense phase: thresholds are absolute, and learning them on inputs scaled by ``1/(1-p)`` would
tune them to magnitudes inference never sees. Activity is not free to lower: after the budget is
reached, further event epochs at that budget (``1 - anneal`` of them) let the weights recover
accuracy under the thresholds they now have.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from braingate.nn.base import event_modules
from braingate.sim.control import execution
from braingate.sim.simulate import simulate
from braingate.train.events_in_loop import rollout

__all__ = ["READOUTS", "EventRecipe", "evaluate_events", "readout_logits", "train_events"]

#: Per-sample logits from per-step outputs ``(T, B, C)``.
READOUTS: dict[str, Callable[[Tensor], Tensor]] = {
    "mean": lambda out: out.mean(0),
    "last": lambda out: out[-1],
}
_SCHEDULES = ("cosine", "constant")
_SCALE_SAMPLES = 256  # streams used to measure the change scale of each threshold


@dataclass(frozen=True)
class EventRecipe:
    """Regularisation, normalisation and schedule of :func:`train_events`.

    Attributes:
        dense_epochs: epochs on the dense path (θ = 0 is exactly the dense function) before the
            events are switched on; 0 starts with events at once.
        batch_size: streams per step.
        lr: learning rate of weights and biases in the dense phase; ``event_lr``: in the event
            phase (None: ``lr``); ``threshold_lr``: of the raw thresholds (``θ = softplus(ρ)``).
        weight_decay: decoupled weight decay (AdamW) of the weights, not of the thresholds.
        input_dropout: probability of dropping an input feature of a stream (one mask per
            stream), in the dense phase only: inverted dropout scales the kept inputs by
            ``1/(1-p)``, and thresholds learned on scaled inputs would not fit inference.
        label_smoothing: of the cross-entropy.
        schedule: ``"cosine"`` (to 0 over each phase's steps) or ``"constant"``.
        warmup: fraction of each phase's steps with a linear learning-rate warm-up.
        penalty: weight λ of the activity penalty.
        anneal: fraction of the event epochs over which the budget goes from ``budget_start``
            to ``budget``.
        budget_start: relative activity allowed at the first event epoch; None: the activity
            measured on the first event batch (the budget then starts where the network is).
        threshold_init: thresholds set, at the start of the event phase, to this times the RMS
            step-to-step change of what each gates (per unit where the layer allows); None
            keeps the model's thresholds (e.g. calibrated ones).
        grad_clip: max gradient norm (None: no clipping).
    """

    dense_epochs: int = 0
    batch_size: int = 64
    lr: float = 3e-3
    event_lr: float | None = None
    threshold_lr: float = 0.05
    weight_decay: float = 1e-2
    input_dropout: float = 0.0
    label_smoothing: float = 0.0
    schedule: str = "cosine"
    warmup: float = 0.05
    penalty: float = 1.0
    anneal: float = 0.5
    budget_start: float | None = None
    threshold_init: float | None = 0.05
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        _int(self.dense_epochs, "dense_epochs", 0)
        _int(self.batch_size, "batch_size", 1)
        for name in ("lr", "threshold_lr", "penalty"):
            _num(getattr(self, name), name, 0.0, math.inf, open_low=name == "lr")
        if self.event_lr is not None:
            _num(self.event_lr, "event_lr", 0.0, math.inf, open_low=True)
        _num(self.weight_decay, "weight_decay", 0.0, math.inf)
        _num(self.input_dropout, "input_dropout", 0.0, 1.0, open_high=True)
        _num(self.label_smoothing, "label_smoothing", 0.0, 1.0, open_high=True)
        _num(self.warmup, "warmup", 0.0, 1.0, open_high=True)
        _num(self.anneal, "anneal", 0.0, 1.0)
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r} is unknown; pass one of {_SCHEDULES}")
        if self.budget_start is not None:
            _num(self.budget_start, "budget_start", 0.0, 1.0, open_low=True, open_high=True)
        if self.threshold_init is not None:
            _num(self.threshold_init, "threshold_init", 0.0, math.inf)
        if self.grad_clip is not None:
            _num(self.grad_clip, "grad_clip", 0.0, math.inf, open_low=True)


def _int(v: object, name: str, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    if v < low:
        raise ValueError(f"{name}={v} must be >= {low}; pass {name}>={low}")
    return v


def _num(v: object, name: str, low: float, high: float, *, open_low: bool = False,
         open_high: bool = False) -> float:  # fmt: skip
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(v).__name__} {v!r}")
    bad_low = v <= low if open_low else v < low
    bad_high = v >= high if open_high else v > high
    if not math.isfinite(v) or bad_low or bad_high:
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        raise ValueError(f"{name}={v!r} must be finite and in {lo}{low}, {high}{hi}")
    return float(v)


def readout_logits(out: Tensor, readout: str | Callable[[Tensor], Tensor]) -> Tensor:
    """Per-sample logits ``(B, C)`` from per-step outputs ``(T, B, C)``: ``"mean"`` over time,
    ``"last"`` step, or a callable."""
    return READOUTS[readout](out) if isinstance(readout, str) else readout(out)


def _check_readout(readout: object) -> None:
    if (isinstance(readout, str) and readout in READOUTS) or callable(readout):
        return
    raise ValueError(f"readout={readout!r} is unknown; pass one of {sorted(READOUTS)} or a "
                     "callable (T, B, C) -> (B, C)")  # fmt: skip


def _check_data(xs: object, ys: object, name: str = "xs") -> None:
    if not isinstance(xs, Tensor) or xs.dim() < 3 or not xs.is_floating_point():
        got = tuple(xs.shape) if isinstance(xs, Tensor) else type(xs).__name__
        raise ValueError(f"{name} must be a float time-first stream (T, B, features), got {got}")
    if xs.shape[0] < 1 or xs.shape[1] < 1:
        raise ValueError(f"{name} has shape {tuple(xs.shape)}: no steps or no streams")
    if not bool(torch.isfinite(xs).all()):
        raise ValueError(f"{name} holds NaN or inf; clean the data first")
    lab = "ys" if name == "xs" else f"{name} labels"
    if not isinstance(ys, Tensor) or ys.dim() != 1 or ys.is_floating_point() or ys.is_complex():
        got = (tuple(ys.shape), ys.dtype) if isinstance(ys, Tensor) else type(ys).__name__
        raise ValueError(f"{lab} must be integer class labels of shape (B,), got {got}")
    if ys.shape[0] != xs.shape[1]:
        raise ValueError(f"{lab} has {ys.shape[0]} labels for {xs.shape[1]} streams in {name}; "
                         "pass one label per stream (the batch axis is dim 1)")  # fmt: skip
    if bool((ys < 0).any()):
        raise ValueError(f"{lab} holds negative labels; pass classes 0..C-1")


def evaluate_events(
    model: nn.Module, xs: Tensor, ys: Tensor, readout: str | Callable = "mean"
) -> dict:
    """Test a model on its real event path (:func:`~braingate.sim.simulate`, event mode).

    Returns:
        ``{"accuracy", "synops", "dense_synops", "ratio"}``: accuracy of the readout's
        decision, synops and dense synops per stream (summed over steps and layers), and
        ``dense_synops / synops`` (inf for a silent network).
    """
    _check_readout(readout)
    _check_data(xs, ys)
    with torch.no_grad():
        out, rep = simulate(model, xs, mode="event")
        acc = float((readout_logits(out, readout).argmax(-1) == ys).double().mean())
    syn, dense = float(rep.total["synops"]), float(rep.total["dense_synops"])
    return {"accuracy": acc, "synops": syn, "dense_synops": dense,
            "ratio": dense / syn if syn > 0 else math.inf}  # fmt: skip


def _names(layer: nn.Module) -> tuple[str, ...]:
    names = getattr(layer, "threshold_names", ("threshold", "latent_threshold"))
    return tuple(n for n in names if hasattr(layer, n))


def _init_thresholds(model: nn.Module, xs: Tensor, layers: dict, rel: float) -> None:
    """θ = ``rel`` × RMS step-to-step change of what each threshold gates, measured on the dense
    run: per input unit for the first threshold, per latent unit ``Vᵀx`` for the last when the
    layer has an input factor ``V``; a scalar where the layer takes no per-unit value."""
    seen: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(mod, inp, out) -> None:  # returns None: the output is left as it is
            seen.setdefault(name, inp[0].detach())

        return hook

    hooks = [m.register_forward_hook(keep(n)) for n, m in layers.items()]
    try:
        with torch.no_grad(), execution(model, "dense"):
            model(xs[:, :_SCALE_SAMPLES])
    finally:
        for h in hooks:
            h.remove()
    for name, layer in layers.items():
        x = seen.get(name)
        if x is None or x.dim() < 3 or x.shape[0] < 2:
            continue  # the layer never ran on a whole sequence: keep its thresholds
        d = x.diff(dim=0).reshape(-1, x.shape[-1])
        scales = {"input": d.pow(2).mean(0).sqrt()}
        V = getattr(layer, "V", None)
        if isinstance(V, Tensor) and V.dim() == 2 and V.shape[0] == d.shape[-1]:
            scales["latent"] = (d @ V.detach()).pow(2).mean(0).sqrt()
        names = _names(layer)
        for k, attr in enumerate(names):
            s = scales["latent"] if k == len(names) - 1 and "latent" in scales and k else None
            s = scales["input"] if s is None else s
            value = (rel * s).clamp_min(1e-6)
            try:
                setattr(layer, attr, value)
            except (ValueError, TypeError):  # the layer takes a scalar (or another shape)
                setattr(layer, attr, float(rel * s.pow(2).mean().sqrt()))


class _Run:
    """The optimizer, its learning-rate schedule and the batches of one :func:`train_events`."""

    def __init__(self, model, xs, ys, recipe: EventRecipe, seed: int | None):
        self.xs, self.ys, self.recipe = xs, ys, recipe
        self.gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.per_epoch = math.ceil(xs.shape[1] / recipe.batch_size)
        weights = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(weights, lr=recipe.lr, weight_decay=recipe.weight_decay)
        self.base = [recipe.lr]

    def add_group(self, params: list, lr: float) -> None:
        """Thresholds: their own learning rate, no weight decay."""
        self.opt.add_param_group({"params": params, "lr": lr, "weight_decay": 0.0})
        self.base.append(lr)

    def set_lr(self, phase_step: int, phase_steps: int) -> None:
        """Linear warm-up, then cosine to 0 (or constant), within each phase."""
        warm = self.recipe.warmup * phase_steps
        f = min(1.0, (phase_step + 1) / warm) if warm >= 1 else 1.0
        if self.recipe.schedule == "cosine":
            f *= 0.5 * (1 + math.cos(math.pi * phase_step / phase_steps))
        for g, base in zip(self.opt.param_groups, self.base):
            g["lr"] = base * f

    def batches(self, dropout: bool = True):
        """Shuffled batches; input dropout with one mask per stream and feature."""
        p = self.recipe.input_dropout if dropout else 0.0
        for idx in torch.randperm(self.xs.shape[1], generator=self.gen).split(
            self.recipe.batch_size
        ):
            x = self.xs[:, idx]
            if p:
                keep = torch.rand(x.shape[1:], generator=self.gen) >= p
                x = x * (keep.to(x.dtype) / (1 - p))
            yield x, self.ys[idx]

    def update(self, loss: Tensor) -> None:
        self.opt.zero_grad()
        loss.backward()
        if self.recipe.grad_clip is not None:
            params = [p for g in self.opt.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, self.recipe.grad_clip)
        self.opt.step()


def _annealed(start: float, end: float, epoch: int, epochs: int, anneal: float) -> float:
    """Budget of an event epoch: geometric from ``start`` to ``end`` over the first ``anneal``
    of the epochs (linear when ``end = 0``), then ``end``."""
    if start <= end or anneal == 0:
        return end
    f = min(1.0, epoch / (anneal * epochs))
    return start * (1 - f) if end == 0 else start * (end / start) ** f


def train_events(
    model: nn.Module,
    xs: Tensor,
    ys: Tensor,
    *,
    epochs: int,
    budget: float,
    readout: str | Callable[[Tensor], Tensor] = "mean",
    recipe: EventRecipe | None = None,
    validation: tuple[Tensor, Tensor] | None = None,
    seed: int | None = None,
) -> list[dict]:
    r"""Train an event network end to end: dense phase, then events in the loop.

    With ``epochs=0`` only the dense phase runs, and the model may be a plain dense network
    (a baseline trained by the same recipe). Otherwise the model is any module with event layers (:class:`~braingate.nn.base.EventModule`, e.g.
    ``bg.EventLinear`` built from scratch or ``bg.convert(dense)``) that maps a stream
    ``(T, B, F)`` to ``(T, B, C)`` in dense mode and one step ``(B, F)`` to ``(B, C)``. Trained
    in place; at the end its thresholds are fixed values again (ready for ``simulate`` and
    ``compile_events``) and its train/eval flag is restored. The loss and the schedule are in
    the module docstring.

    Args:
        model: the event network.
        xs: training streams ``(T, B, F)``; ys: class labels ``(B,)``.
        epochs: epochs with events in the loop (≥ 0).
        budget: relative activity ``synops / dense_synops`` the penalty aims at, in [0, 1)
            (``1/20``: 20× fewer synops than dense).
        readout: how per-step outputs become one decision: ``"mean"``, ``"last"``, a callable.
        recipe: :class:`EventRecipe` (defaults when None).
        validation: optional ``(xs, ys)``; after every event epoch the model is tested on it
            through :func:`evaluate_events` (the real event path) and the history records it.
        seed: seeds the batch order and the dropout masks (None: the global generator).

    Returns:
        History, one dict per epoch: ``phase`` (``"dense"`` / ``"events"``), ``epoch``, ``lr``,
        ``loss`` and ``ce`` (means over the epoch's batches), and for event epochs ``budget``,
        ``activity`` (relative synops on the training batches) and ``ratio`` (its inverse),
        plus ``val_accuracy`` and ``val_ratio`` with ``validation``.

    Raises:
        ValueError / TypeError: bad arguments, before the model is touched.

    Example:
        >>> import torch, braingate as bg
        >>> from braingate.train.end_to_end import EventRecipe, train_events
        >>> net = torch.nn.Sequential(bg.EventLinear(3, 8, 2), torch.nn.ReLU(),
        ...                           bg.EventLinear(8, 2, 2))
        >>> xs, ys = torch.randn(5, 16, 3).cumsum(0), torch.randint(0, 2, (16,))
        >>> hist = train_events(net, xs, ys, epochs=1, budget=0.2, seed=0,
        ...                     recipe=EventRecipe(dense_epochs=2, batch_size=8))
        >>> [h["phase"] for h in hist]
        ['dense', 'dense', 'events']
    """
    recipe = EventRecipe() if recipe is None else recipe
    if not isinstance(recipe, EventRecipe):
        raise TypeError(f"recipe must be an EventRecipe, got {type(recipe).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    layers = dict(event_modules(model))
    _int(epochs, "epochs", 0)
    if not layers and epochs:
        raise ValueError(
            "model has no event layers; build it from bg.EventLinear (or other event modules), "
            "convert a dense model with bg.convert, or pass epochs=0 to train a dense model by "
            "the dense phase alone"
        )
    if epochs == 0 and recipe.dense_epochs == 0:
        raise ValueError("epochs=0 and recipe.dense_epochs=0: nothing to train; pass epochs>=1")
    _num(budget, "budget", 0.0, 1.0, open_high=True)
    _check_readout(readout)
    _check_data(xs, ys)
    if validation is not None:
        if not isinstance(validation, tuple) or len(validation) != 2:
            raise ValueError("validation must be a tuple (xs, ys)")
        _check_data(*validation, name="validation")
    if seed is not None:
        _int(seed, "seed", 0)

    run = _Run(model, xs, ys, recipe, seed)
    history: list[dict] = []
    was_training = model.training
    model.train()
    try:
        with execution(model, "dense"):
            for epoch in range(recipe.dense_epochs):
                history.append(_dense_epoch(model, run, epoch, readout))
        if epochs:
            history += _event_phase(model, run, layers, epochs, budget, readout, validation)
    finally:
        for layer in layers.values():
            freeze = getattr(layer, "freeze_thresholds", None)  # not (yet) in the protocol
            if freeze is not None:
                freeze()
        model.train(was_training)
    return history


def _loss(out: Tensor, y: Tensor, readout, recipe: EventRecipe) -> Tensor:
    logits = readout_logits(out, readout)
    return F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)


def _dense_epoch(model: nn.Module, run: _Run, epoch: int, readout) -> dict:
    ce_sum = 0.0
    steps = run.recipe.dense_epochs * run.per_epoch
    for k, (x, y) in enumerate(run.batches()):
        run.set_lr(epoch * run.per_epoch + k, steps)
        ce = _loss(model(x), y, readout, run.recipe)
        run.update(ce)
        ce_sum += float(ce.detach())
    ce = ce_sum / run.per_epoch
    return {"phase": "dense", "epoch": epoch, "lr": run.opt.param_groups[0]["lr"], "loss": ce,
            "ce": ce}  # fmt: skip


def _event_phase(model, run: _Run, layers: dict, epochs: int, budget: float, readout,
                 validation) -> list[dict]:  # fmt: skip
    recipe = run.recipe
    if recipe.threshold_init is not None:
        _init_thresholds(model, run.xs, layers, recipe.threshold_init)
    known = {id(p) for p in model.parameters()}
    for layer in layers.values():
        layer.learn_thresholds(per_unit=True)
    raw = [p for p in model.parameters() if id(p) not in known]
    if recipe.event_lr is not None:
        run.base[0] = recipe.event_lr
    run.add_group(raw, recipe.threshold_lr)
    start, history = recipe.budget_start, []
    for epoch in range(epochs):
        loss_sum = ce_sum = act = 0.0
        b = budget
        for k, (x, y) in enumerate(run.batches(dropout=False)):
            run.set_lr(epoch * run.per_epoch + k, epochs * run.per_epoch)
            out, tape = rollout(model, x)
            ce = _loss(out, y, readout, recipe)
            a = float(tape.penalty(0.0).detach())
            if start is None:  # the budget starts where the network is
                start = min(max(a, budget), 0.999)
            b = _annealed(start, budget, epoch, epochs, recipe.anneal)
            loss = ce + recipe.penalty * tape.penalty(b)
            run.update(loss)
            loss_sum += float(loss.detach())
            ce_sum += float(ce.detach())
            act += a
        act /= run.per_epoch
        row = {"phase": "events", "epoch": epoch, "lr": run.opt.param_groups[0]["lr"],
               "loss": loss_sum / run.per_epoch, "ce": ce_sum / run.per_epoch, "budget": b,
               "activity": act, "ratio": 1 / act if act > 0 else math.inf}  # fmt: skip
        if validation is not None:
            v = evaluate_events(model, *validation, readout=readout)
            row["val_accuracy"], row["val_ratio"] = v["accuracy"], v["ratio"]
        history.append(row)
    return history
