"""The steps of the event-vs-dense comparison (examples/02): train, convert, fine-tune, measure.

Kept apart from the script so that the script reads as the recipe and the tests can reuse it.
"""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

import braingate as bg
from braingate.calibration import calibrate_thresholds
from braingate.sim.fused import why_not_fusable
from braingate.train.events_in_loop import rollout


@dataclass
class Setup:
    """One comparison: network shape, readout and training budget."""

    hidden: int
    ranks: dict  # {layer name: rank}
    readout: str  # "mean" over time, or "last" step
    dense_epochs: int
    event_epochs: int
    batch: int
    lam: float = 2.0  # weight of the activity penalty (relative synops)
    lr: float = 1e-3
    threshold_lr: float = 0.1
    tolerance: float = 0.0  # calibration: allowed drop of training accuracy
    calib_evals: int = 60  # calibration budget (event-mode simulations)
    start_scale: float = 1.0  # fine-tuning starts from the calibrated thresholds times this
    target_ratio: float | None = None  # activity under 1/target_ratio is not penalised


def mlp(features: int, hidden: int, classes: int) -> nn.Sequential:
    """The dense baseline: a two-hidden-layer ReLU MLP applied at every step."""
    return nn.Sequential(
        nn.Linear(features, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, classes),
    )  # fmt: skip


def logits(out: Tensor, readout: str) -> Tensor:
    """Per-sample logits from per-step outputs ``(T, B, C)``."""
    return out.mean(0) if readout == "mean" else out[-1]


def accuracy(out: Tensor, y: Tensor, readout: str) -> float:
    return float((logits(out, readout).argmax(-1) == y).double().mean())


def train_dense(net: nn.Module, xs: Tensor, ys: Tensor, setup: Setup, desc: str) -> None:
    """Full-batch Adam on the whole stream (the dense path is one batched GEMM per layer)."""
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in tqdm(range(setup.dense_epochs), desc=f"{desc}: dense", leave=False):
        loss = F.cross_entropy(logits(net(xs), setup.readout), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()


def finetune_events(net: nn.Module, xs: Tensor, ys: Tensor, setup: Setup, desc: str) -> list:
    """Events in the loop: surrogate gradients, learned per-unit thresholds, activity penalty.

    Loss ``CE + λ · max(0, synops/dense_synops − 1/target_ratio)`` on the differentiable event
    path; returns the history.
    """
    layers = [m for m in net.modules() if isinstance(m, bg.EventLinear)]
    for layer in layers:
        layer.threshold = layer.threshold * setup.start_scale
        layer.latent_threshold = layer.latent_threshold * setup.start_scale
        layer.learn_thresholds(per_unit=True)
    named = list(net.named_parameters())
    opt = torch.optim.Adam([
        {"params": [p for n, p in named if "threshold" not in n], "lr": setup.lr},
        {"params": [p for n, p in named if "threshold" in n], "lr": setup.threshold_lr},
    ])  # fmt: skip
    history = []
    bar = tqdm(range(setup.event_epochs), desc=f"{desc}: events in the loop", leave=False)
    for _ in bar:
        for idx in torch.randperm(xs.shape[1]).split(setup.batch):
            out, tape = rollout(net, xs[:, idx])
            ce = F.cross_entropy(logits(out, setup.readout), ys[idx])
            loss = ce + setup.lam * tape.penalty(
                1 / setup.target_ratio if setup.target_ratio else 0
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        history.append({"ce": float(ce.detach()), "train_ratio": tape.ratio()})
        bar.set_postfix(ce=f"{float(ce.detach()):.3f}", ratio=f"{tape.ratio():.1f}x")
    for layer in layers:
        layer.freeze_thresholds()
    return history


def per_step_seconds(steppers: dict, xs: Tensor, samples: int = 5) -> tuple[dict, dict]:
    """Median wall clock of one step at batch 1 over ``samples`` test streams, per stepper, and
    of the reset before each stream (``step(None)``), reported apart from the steps.

    The steppers take turns stream by stream, so a burst of load from other processes on a
    shared machine hits all of them alike.
    """
    times = {name: [] for name in steppers}
    resets = {name: [] for name in steppers}
    with torch.no_grad():
        for step in steppers.values():  # warm-up: first-call and cache costs
            step(None)
            for x in xs[:, :1].contiguous():
                step(x)
        for b in range(min(samples, xs.shape[1])):
            stream = xs[:, b : b + 1].contiguous()
            for name, step in steppers.items():
                t0 = time.perf_counter()
                step(None)  # reset
                t1 = time.perf_counter()
                for x in stream:
                    step(x)
                times[name].append((time.perf_counter() - t1) / len(stream))
                resets[name].append(t1 - t0)
    med = statistics.median
    return {n: med(t) for n, t in times.items()}, {n: med(t) for n, t in resets.items()}


def dense_stepper(net: nn.Module):
    return lambda x: None if x is None else net(x)


def event_stepper(net: nn.Module):
    """One step of the event network: the fused chain (one call for all layers) when it applies."""
    bg.execution(net, "event")
    run = bg.sim.compile_events(net) if not why_not_fusable(net) else net

    reset = run.reset if isinstance(run, bg.sim.EventChain) else lambda: bg.reset(net)

    def step(x):
        if x is None:
            reset()
            return None
        return run(x)

    return step


def convert_and_calibrate(dense: nn.Module, xs: Tensor, ys: Tensor, setup: Setup):
    """SVD conversion, then thresholds by calibration alone (the no-training baseline)."""
    net = bg.convert(copy.deepcopy(dense), rank=setup.ranks)
    cal = calibrate_thresholds(
        net, xs, ys, tolerance=setup.tolerance, readout=setup.readout, max_evals=setup.calib_evals
    )
    return net, cal
