"""Does calibrate_thresholds' tolerance hold on data it never saw? Test-set drop vs tolerance.

For each task, seed and tolerance: a dense MLP is trained on a training split, converted to
EventLinear layers (``bg.convert``, truncated SVD), its thresholds calibrated on calibration data
(by default the training split itself — what a user has at hand — of which calibrate_thresholds
holds out a quarter for its own check), and the event network is run on a test split it never
saw. The *drop* is the test accuracy of the converted network at θ = 0 (what calibration starts
from) minus its test accuracy at the calibrated thresholds; the case *passes* when
``drop ≤ tolerance + 1 point`` (issue 16's acceptance: in ≥ 90 % of the (task, tolerance, seed)
cases). Synops savings on the test split are reported beside each case: dense synops over event
synops, and over the θ = 0 event run (what the thresholds themselves save).

Tasks (real data shipped in packages, DESIGN §5; each seed draws its own stratified split):
- ``digits``: sklearn digits revealed one 8-pixel row per step (frame t holds rows 0..t), 8
  steps, decision at the last step; 50 % train / 50 % test.
- ``BasicMotions``: aeon, 6 sensor channels, 100 steps, 4 classes, decision from the mean logits;
  aeon's train/test sizes (40 / 40), re-drawn from the pooled 80 samples per seed.
- ``GunPoint``: aeon, 1 channel, 150 steps, 2 classes; the network sees the last 16 samples
  (a delay line), decision from the mean logits; aeon's sizes (50 / 150) re-drawn per seed.
- ``saccade-CNN`` (conv): saccade digits (``braingate.datasets.saccade``: sklearn digits moved
  along the N-MNIST saccade path, 28×28, 3 frames per saccade: 9 frames), 800 digits of a
  per-seed permutation, 50 % train / 50 % test; the CNN of ``conv_event_vs_dense.py`` (conv
  1→16, pool, conv 16→32, pool, linear) trained densely on single frames, converted to
  EventConv2d / EventLinear and calibrated on whole streams; decision from the mean logits over
  the stream.
- ``GunPoint-GRU``, ``BasicMotions-GRU`` (recurrent): the same aeon data (the sets
  ``braingate.datasets.sensors`` ships) without the delay line, an ``nn.GRU(n, 32)`` with a
  linear head on every step, trained densely (minibatches, BPTT), converted by ``bg.convert`` to
  EventGRU (hidden factor at rank 16) + EventLinear; decision from the mean logits (GunPoint) or
  the last step's (BasicMotions, as in ``recurrent_event_vs_dense.py``).

A task is one row of ``TASKS`` (loader, model builder, trainer, readout, ranks, training and
calibration budgets).

    python benchmarks/calibration_holdout.py [--quick] [--seeds 0 1 2 3 4]
        [--tolerances 0.01 0.02 0.05] [--tasks digits BasicMotions GunPoint saccade-CNN ...]
        [--calibration train|split] [--out results/calibration_holdout.json]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, write_json

import braingate as bg
from braingate.calibration import CalibrationWarning

PASS_SLACK = 0.01  # the acceptance allows the test drop to exceed the tolerance by one point


@dataclass
class Split:
    """Time-first float32 streams ``(T, B, ...)`` (features, or channels × height × width) and
    int64 labels ``(B,)``."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    classes: int


@dataclass(frozen=True)
class Task:
    """One benchmark task: where its data comes from and how its dense model is built/trained."""

    name: str
    load: Callable[[int, bool], Split]  # (seed, quick) -> Split
    build: Callable[[tuple, int], nn.Module]  # (sample shape (F,) or (C, H, W), classes) -> model
    readout: str  # "mean" | "last": how outputs (T, B, C) become one decision per sample
    rank: dict  # {module name: rank} for bg.convert
    epochs: int
    lr: float = 3e-3
    train: str = "full"  # "full": full-batch on the streams; "frames": single frames (CNNs);
    # "minibatch": minibatches of whole streams with clipped gradients (recurrent nets)
    framewise: bool = False  # the dense model takes one frame (B, ...), not a stream (T, B, ...)
    max_evals: int = 200  # calibrate_thresholds' budget of event-mode simulations
    kind: str = "linear"  # "linear" | "conv" | "recurrent": which event layers it calibrates


# -- data -------------------------------------------------------------------------------------------
def _split_indices(y: np.ndarray, test: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    return train_test_split(idx, test_size=test, random_state=seed, stratify=y)


def _streams(x: np.ndarray, y: np.ndarray, test: float, seed: int, quick: bool) -> Split:
    """(N, T, F) arrays -> standardised (with training statistics) time-first streams."""
    tr, te = _split_indices(y, test, seed)
    if quick:  # a few samples of each split, all classes kept by the stratified split
        tr, te = tr[:64], te[:48]
    mu = x[tr].mean(axis=(0, 1), keepdims=True)
    sd = x[tr].std(axis=(0, 1), keepdims=True) + 1e-8
    conv = lambda a: torch.from_numpy(((a - mu) / sd).astype(np.float32)).transpose(0, 1)  # noqa: E731
    lab = lambda i: torch.as_tensor(y[i], dtype=torch.int64)  # noqa: E731
    return Split(conv(x[tr]).contiguous(), lab(tr), conv(x[te]).contiguous(), lab(te),
                 int(y.max()) + 1)  # fmt: skip


def load_digits(seed: int, quick: bool) -> Split:
    """sklearn digits, rows revealed one per step: ``(8, B, 64)``, frame t holds rows 0..t."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    rows = d.images.astype(np.float64)  # (N, 8, 8)
    frames = np.zeros((len(rows), 8, 64))
    for t in range(8):
        frames[:, t:, t * 8 : (t + 1) * 8] = rows[:, t : t + 1, :]
    return _streams(frames, d.target, 0.5, seed, quick)


def _aeon(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Pooled train + test of an aeon dataset: ``(N, T, channels)`` and integer labels."""
    from aeon.datasets import load_classification

    xs, ys = zip(*(load_classification(name, split=s) for s in ("train", "test")))
    x = np.concatenate(xs).transpose(0, 2, 1).astype(np.float64)
    y = np.concatenate(ys)
    classes = sorted(set(y.tolist()))
    return x, np.array([classes.index(v) for v in y])


def load_basic_motions(seed: int, quick: bool) -> Split:
    x, y = _aeon("BasicMotions")
    return _streams(x, y, 0.5, seed, quick)  # aeon's own split is 40 / 40


def delay_line(x: np.ndarray, width: int) -> np.ndarray:
    """``(N, T, F) -> (N, T, width·F)``: step t sees samples t, t−1, …, t−width+1 (zeros before
    the start)."""
    N, T, Fe = x.shape
    out = np.zeros((N, T, width * Fe))
    for k in range(width):
        out[:, k:, k * Fe : (k + 1) * Fe] = x[:, : T - k]
    return out


def load_gun_point(seed: int, quick: bool) -> Split:
    x, y = _aeon("GunPoint")
    return _streams(delay_line(x, 16), y, 0.75, seed, quick)  # aeon's own split is 50 / 150


def load_gun_point_raw(seed: int, quick: bool) -> Split:
    """GunPoint without the delay line (a recurrent network keeps its own memory)."""
    x, y = _aeon("GunPoint")
    return _streams(x, y, 0.75, seed, quick)


def load_saccade(seed: int, quick: bool) -> Split:
    """Saccade digits ``(9, B, 1, 28, 28)``: 800 digits of the seed's permutation (120 quick),
    half for training, half for the test."""
    from braingate.datasets.saccade import saccade_digits

    d = saccade_digits(steps_per_saccade=3, n=120 if quick else 800, test_fraction=0.5,
                       seed=seed)  # fmt: skip
    return Split(d.x_train, d.y_train, d.x_test, d.y_test, 10)


def mlp(hidden: int) -> Callable[[tuple, int], nn.Module]:
    def build(shape: tuple, classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Linear(shape[-1], hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, classes),
        )  # fmt: skip

    return build


def cnn(shape: tuple, classes: int) -> nn.Module:
    """conv_event_vs_dense.py's digits CNN: conv 1→16, ReLU, pool, conv 16→32, ReLU, pool,
    linear."""
    C, H, W = shape
    return nn.Sequential(
        nn.Conv2d(C, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (H // 4) * (W // 4), classes),
    )  # fmt: skip


class GRUClassifier(nn.Module):
    """``nn.GRU`` with a linear head on every step's output: ``(T, B, n) -> (T, B, classes)``
    (``bg.convert`` turns ``gru`` into an EventGRU, ``head`` into an EventLinear)."""

    def __init__(self, features: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.gru, self.head = nn.GRU(features, hidden), nn.Linear(hidden, classes)

    def forward(self, xs: Tensor) -> Tensor:
        out, _ = self.gru(xs)
        # the head on (T·B, H): bg.simulate feeds one step as a length-1 sequence, and an
        # event layer steps (B, H)
        return self.head(out.flatten(0, 1)).unflatten(0, out.shape[:2])


def gru(hidden: int) -> Callable[[tuple, int], nn.Module]:
    return lambda shape, classes: GRUClassifier(shape[-1], hidden, classes)


TASKS: dict[str, Task] = {
    "digits": Task("digits", load_digits, mlp(256), "last", {"0": 32, "2": 32, "4": 10}, 150),
    "BasicMotions": Task("BasicMotions", load_basic_motions, mlp(128), "mean",
                         {"0": 6, "2": 32, "4": 4}, 100),
    "GunPoint": Task("GunPoint", load_gun_point, mlp(128), "mean", {"0": 16, "2": 32, "4": 2},
                     200),
    # conv: ranks of conv_event_vs_dense.py; 30 evaluations (each runs 300 streams of 9 frames)
    "saccade-CNN": Task("saccade-CNN", load_saccade, cnn, "mean", {"0": 6, "3": 12, "7": 10},
                        15, lr=2e-3, train="frames", framewise=True, max_evals=30, kind="conv"),
    "GunPoint-GRU": Task("GunPoint-GRU", load_gun_point_raw, gru(32), "mean",
                         {"gru": 16, "head": 2}, 200, lr=1e-2, train="minibatch",
                         kind="recurrent"),
    "BasicMotions-GRU": Task("BasicMotions-GRU", load_basic_motions, gru(32), "last",
                             {"gru": 16, "head": 4}, 100, lr=1e-2, train="minibatch",
                             kind="recurrent"),
}  # fmt: skip
QUICK = {"epochs": 30, "max_evals": 24}


# -- one case ---------------------------------------------------------------------------------------
def decisions(out: Tensor, readout: str) -> Tensor:
    return _readout(out, readout).argmax(-1)


def accuracy(out: Tensor, y: Tensor, readout: str) -> float:
    return float((decisions(out, readout) == y).double().mean())


def dense_outputs(net: nn.Module, xs: Tensor, task: Task) -> Tensor:
    """The dense model on streams ``(T, B, ...)`` -> ``(T, B, C)`` (frame by frame if it takes
    frames)."""
    if task.framewise:
        return net(xs.flatten(0, 1)).unflatten(0, xs.shape[:2])
    return net(xs)


def train_dense(net: nn.Module, s: Split, task: Task, epochs: int) -> None:
    """Adam, cross-entropy of the readout's logits. ``full``: full batch, the whole training
    stream; ``minibatch``: batches of 25 streams, gradient norm clipped at 1; ``frames``:
    batches of 64 streams, 4 random frames of each, every frame labelled (a CNN trained on
    frames, run on streams)."""
    opt = torch.optim.Adam(net.parameters(), lr=task.lr, weight_decay=1e-4)

    def step(loss: Tensor) -> None:
        opt.zero_grad()
        loss.backward()
        if task.train == "minibatch":
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    T, N = s.x_train.shape[:2]
    for _ in range(epochs):
        if task.train == "full":
            step(F.cross_entropy(_readout(net(s.x_train), task.readout), s.y_train))
        elif task.train == "minibatch":
            for idx in torch.randperm(N).split(25):
                out = net(s.x_train[:, idx])
                step(F.cross_entropy(_readout(out, task.readout), s.y_train[idx]))
        else:
            for idx in torch.randperm(N).split(64):
                f = torch.randint(0, T, (4,))
                x = s.x_train[f][:, idx].flatten(0, 1)
                step(F.cross_entropy(net(x), s.y_train[idx].repeat(len(f))))
    net.eval()


def _readout(out: Tensor, readout: str) -> Tensor:
    return out.mean(0) if readout == "mean" else out[-1]


def calibration_data(s: Split, how: str, seed: int) -> tuple[Tensor, Tensor, Split]:
    """``train``: the training split itself; ``split``: a disjoint third of it (the dense model
    is then trained on the other two thirds)."""
    if how == "train":
        return s.x_train, s.y_train, s
    fit, cal = _split_indices(s.y_train.numpy(), 1 / 3, seed + 1000)
    fit, cal = torch.as_tensor(fit), torch.as_tensor(cal)
    rest = Split(s.x_train[:, fit], s.y_train[fit], s.x_test, s.y_test, s.classes)
    return s.x_train[:, cal], s.y_train[cal], rest


def run_case(task: Task, seed: int, tolerances: list[float], how: str, quick: bool,
             guards: dict | None = None) -> list[dict]:  # fmt: skip
    """Train, convert and calibrate one (task, seed) at every tolerance; one row per tolerance.

    ``guards``: keyword arguments of calibrate_thresholds (``holdout``, ``confidence``,
    ``safety``, ``headroom``) overriding its defaults, for ablations.
    """
    torch.manual_seed(seed)
    s = task.load(seed, quick)
    cal_x, cal_y, s = calibration_data(s, how, seed)
    dense = task.build(tuple(s.x_train.shape[2:]), s.classes)
    train_dense(dense, s, task, QUICK["epochs"] if quick else task.epochs)
    with torch.no_grad():
        dense_acc = accuracy(dense_outputs(dense, s.x_test, task), s.y_test, task.readout)
    template = bg.convert(copy.deepcopy(dense), rank=task.rank)
    # every run works on a copy of the converted model taken before any simulation
    out, exact = bg.simulate(copy.deepcopy(template), s.x_test, mode="event")
    ref_acc = accuracy(out, s.y_test, task.readout)
    rows = []
    for tol in tolerances:
        cand = copy.deepcopy(template)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            res = bg.calibrate_thresholds(
                cand, cal_x, cal_y, tolerance=tol, readout=task.readout,
                max_evals=min(QUICK["max_evals"], task.max_evals) if quick else task.max_evals,
                seed=seed, **(guards or {}),
            )  # fmt: skip
        seconds = time.perf_counter() - t0
        out, rep = bg.simulate(cand, s.x_test, mode="event")
        acc = accuracy(out, s.y_test, task.readout)
        drop = ref_acc - acc
        rows.append({
            "task": task.name, "kind": task.kind, "seed": seed, "tolerance": tol,
            "dense_acc": dense_acc, "ref_acc": ref_acc, "test_acc": acc, "drop": drop,
            "pass": drop <= tol + PASS_SLACK + 1e-9,
            "synops": rep.total["synops"], "dense_synops": rep.total["dense_synops"],
            "saving_vs_dense": rep.total["dense_synops"] / max(rep.total["synops"], 1e-12),
            "saving_vs_exact": exact.total["synops"] / max(rep.total["synops"], 1e-12),
            "cal_samples": int(cal_x.shape[1]), "test_samples": int(s.x_test.shape[1]),
            "cal_score": res.score, "cal_reference": res.reference_score,
            "holdout_score": res.holdout_score, "holdout_reference": res.holdout_reference_score,
            "backoff": res.backoff, "evaluations": res.evaluations, "warnings": res.warnings,
            "seconds": seconds,
        })  # fmt: skip
    return rows


# -- summary and output -----------------------------------------------------------------------------
def summarise(rows: list[dict]) -> dict:
    """Pass rate overall and per (task, tolerance), with mean drops and savings."""
    groups = {}
    for r in rows:
        groups.setdefault((r["task"], r["tolerance"]), []).append(r)
    per = []
    for (task, tol), rs in groups.items():
        per.append({
            "task": task, "kind": rs[0]["kind"], "tolerance": tol, "cases": len(rs),
            "cal_n": rs[0]["cal_samples"],
            "passed": sum(r["pass"] for r in rs),
            "mean_ref_acc": statistics.fmean(r["ref_acc"] for r in rs),
            "mean_drop": statistics.fmean(r["drop"] for r in rs),
            "max_drop": max(r["drop"] for r in rs),
            "mean_saving_vs_dense": statistics.fmean(r["saving_vs_dense"] for r in rs),
            "mean_saving_vs_exact": statistics.fmean(r["saving_vs_exact"] for r in rs),
        })  # fmt: skip
    passed = sum(r["pass"] for r in rows)
    kinds = {}
    for r in rows:
        k = kinds.setdefault(r["kind"], {"cases": 0, "passed": 0})
        k["cases"] += 1
        k["passed"] += bool(r["pass"])
    return {
        "cases": len(rows),
        "passed": passed,
        "pass_rate": passed / max(len(rows), 1),
        "acceptance": "drop <= tolerance + 1 point in >= 90 % of cases",
        "accepted": passed >= 0.9 * len(rows),
        "per_kind": kinds,
        "per_task_tolerance": per,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny run for tests (seconds)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--tolerances", type=float, nargs="+", default=[0.01, 0.02, 0.05])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument(
        "--calibration",
        choices=["train", "split"],
        default="train",
        help="calibrate on the training split itself, or on a disjoint third of it",
    )
    ap.add_argument("--out", default="results/calibration_holdout.json")
    for name, help_ in (
        ("holdout", "fraction held out for the check"),
        ("confidence", "confidence of the noise margin (0.5: none)"),
        ("safety", "margin share a sample may lose (1: only flips count)"),
        ("headroom", "divisor of the found thresholds (1: none)"),
    ):
        ap.add_argument(f"--{name}", type=float, help=f"calibrate_thresholds {help_}; default: "
                        "the library's")  # fmt: skip
    args = ap.parse_args(argv)
    guards = {k: getattr(args, k) for k in ("holdout", "confidence", "safety", "headroom")
              if getattr(args, k) is not None}  # fmt: skip
    if args.quick:
        args.seeds = args.seeds[:1]
    torch.set_num_threads(1)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for name in args.tasks:
        for seed in args.seeds:
            t1 = time.perf_counter()
            new = run_case(TASKS[name], seed, args.tolerances, args.calibration, args.quick,
                           guards)  # fmt: skip
            rows += new
            print(f"{name} seed {seed}: reference {new[0]['ref_acc']:.3f}, drops "
                  + ", ".join(f"{r['drop']:+.3f}" for r in new)
                  + f" [{time.perf_counter() - t1:.0f} s]", flush=True)  # fmt: skip
    summary = summarise(rows)
    payload = {
        "benchmark": "calibration_holdout", "quick": args.quick, "calibration": args.calibration,
        "seeds": args.seeds, "tolerances": args.tolerances, "tasks": args.tasks,
        "guards": guards or "library defaults", "pass_slack": PASS_SLACK, "summary": summary,
        "rows": rows, "machine": machine(),
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    write_json(Path(args.out), payload)
    cols = ["task", "tolerance", "cal_n", "cases", "passed", "mean_ref_acc", "mean_drop", "max_drop",
            "mean_saving_vs_dense", "mean_saving_vs_exact"]  # fmt: skip
    fmt = {"tolerance": "{:.2f}", "mean_ref_acc": "{:.4f}", "mean_drop": "{:+.4f}", "max_drop": "{:+.4f}",
           "mean_saving_vs_dense": "{:.1f}x", "mean_saving_vs_exact": "{:.2f}x"}  # fmt: skip
    print(table(summary["per_task_tolerance"], cols, fmt))
    print("\n" + ", ".join(f"{k}: {v['passed']}/{v['cases']}"
                           for k, v in summary["per_kind"].items()))  # fmt: skip
    print(f"{summary['passed']}/{summary['cases']} cases with drop <= tolerance + 1 point "
          f"({100 * summary['pass_rate']:.0f} %; acceptance >= 90 %: "
          f"{'met' if summary['accepted'] else 'NOT met'}); wrote {args.out}")  # fmt: skip
    return payload


if __name__ == "__main__":
    main()
