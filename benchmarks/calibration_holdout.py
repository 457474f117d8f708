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

A task is one row of ``TASKS`` (loader, model builder, readout, ranks, training budget): conv and
recurrent streams are added as rows.

    python benchmarks/calibration_holdout.py [--quick] [--seeds 0 1 2 3 4]
        [--tolerances 0.01 0.02 0.05] [--tasks digits BasicMotions GunPoint]
        [--calibration train|split] [--out results/calibration_holdout.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
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
from _common import machine, table

import braingate as bg
from braingate.calibration import CalibrationWarning

PASS_SLACK = 0.01  # the acceptance allows the test drop to exceed the tolerance by one point


@dataclass
class Split:
    """Time-first float32 streams ``(T, B, F)`` and int64 labels ``(B,)``."""

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
    build: Callable[[int, int], nn.Module]  # (features, classes) -> dense model
    readout: str  # "mean" | "last": how outputs (T, B, C) become one decision per sample
    rank: dict  # {module name: rank} for bg.convert
    epochs: int
    lr: float = 3e-3


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


def mlp(hidden: int) -> Callable[[int, int], nn.Module]:
    def build(features: int, classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Linear(features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, classes),
        )  # fmt: skip

    return build


TASKS: dict[str, Task] = {
    "digits": Task("digits", load_digits, mlp(256), "last", {"0": 32, "2": 32, "4": 10}, 150),
    "BasicMotions": Task("BasicMotions", load_basic_motions, mlp(128), "mean",
                         {"0": 6, "2": 32, "4": 4}, 100),
    "GunPoint": Task("GunPoint", load_gun_point, mlp(128), "mean", {"0": 16, "2": 32, "4": 2},
                     200),
}  # fmt: skip
QUICK = {"epochs": 30, "max_evals": 24}


# -- one case ---------------------------------------------------------------------------------------
def decisions(out: Tensor, readout: str) -> Tensor:
    return (out.mean(0) if readout == "mean" else out[-1]).argmax(-1)


def accuracy(out: Tensor, y: Tensor, readout: str) -> float:
    return float((decisions(out, readout) == y).double().mean())


def train_dense(net: nn.Module, s: Split, task: Task, epochs: int) -> None:
    """Full-batch Adam on the whole training stream (cross-entropy of the readout's logits)."""
    opt = torch.optim.Adam(net.parameters(), lr=task.lr, weight_decay=1e-4)
    for _ in range(epochs):
        out = net(s.x_train)
        logits = out.mean(0) if task.readout == "mean" else out[-1]
        loss = F.cross_entropy(logits, s.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()


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
    ``safety``) overriding its defaults, for ablations.
    """
    torch.manual_seed(seed)
    s = task.load(seed, quick)
    cal_x, cal_y, s = calibration_data(s, how, seed)
    dense = task.build(s.x_train.shape[-1], s.classes)
    train_dense(dense, s, task, QUICK["epochs"] if quick else task.epochs)
    with torch.no_grad():
        dense_acc = accuracy(dense(s.x_test), s.y_test, task.readout)
    net = bg.convert(copy.deepcopy(dense), rank=task.rank)
    out, exact = bg.simulate(net, s.x_test, mode="event")
    ref_acc = accuracy(out, s.y_test, task.readout)
    rows = []
    for tol in tolerances:
        cand = copy.deepcopy(net)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            res = bg.calibrate_thresholds(
                cand, cal_x, cal_y, tolerance=tol, readout=task.readout,
                max_evals=QUICK["max_evals"] if quick else 200, seed=seed, **(guards or {}),
            )  # fmt: skip
        seconds = time.perf_counter() - t0
        out, rep = bg.simulate(cand, s.x_test, mode="event")
        acc = accuracy(out, s.y_test, task.readout)
        drop = ref_acc - acc
        rows.append({
            "task": task.name, "seed": seed, "tolerance": tol,
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
            "task": task, "tolerance": tol, "cases": len(rs), "cal_n": rs[0]["cal_samples"],
            "passed": sum(r["pass"] for r in rs),
            "mean_drop": statistics.fmean(r["drop"] for r in rs),
            "max_drop": max(r["drop"] for r in rs),
            "mean_saving_vs_dense": statistics.fmean(r["saving_vs_dense"] for r in rs),
            "mean_saving_vs_exact": statistics.fmean(r["saving_vs_exact"] for r in rs),
        })  # fmt: skip
    passed = sum(r["pass"] for r in rows)
    return {
        "cases": len(rows),
        "passed": passed,
        "pass_rate": passed / max(len(rows), 1),
        "acceptance": "drop <= tolerance + 1 point in >= 90 % of cases",
        "accepted": passed >= 0.9 * len(rows),
        "per_task_tolerance": per,
    }


def write_json_atomic(path: Path, payload: dict) -> Path:
    """Write ``payload`` as JSON through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; give it a plain file's mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
    ):
        ap.add_argument(f"--{name}", type=float, help=f"calibrate_thresholds {help_}; default: "
                        "the library's")  # fmt: skip
    args = ap.parse_args(argv)
    guards = {k: getattr(args, k) for k in ("holdout", "confidence", "safety")
              if getattr(args, k) is not None}  # fmt: skip
    if args.quick:
        args.seeds = args.seeds[:1]
    torch.set_num_threads(1)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for name in args.tasks:
        for seed in args.seeds:
            rows += run_case(TASKS[name], seed, args.tolerances, args.calibration, args.quick,
                             guards)  # fmt: skip
    summary = summarise(rows)
    payload = {
        "benchmark": "calibration_holdout", "quick": args.quick, "calibration": args.calibration,
        "seeds": args.seeds, "tolerances": args.tolerances, "tasks": args.tasks,
        "guards": guards or "library defaults", "pass_slack": PASS_SLACK, "summary": summary, "rows": rows, "machine": machine(),
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    write_json_atomic(Path(args.out), payload)
    cols = ["task", "tolerance", "cal_n", "cases", "passed", "mean_drop", "max_drop",
            "mean_saving_vs_dense", "mean_saving_vs_exact"]  # fmt: skip
    fmt = {"tolerance": "{:.2f}", "mean_drop": "{:+.4f}", "max_drop": "{:+.4f}",
           "mean_saving_vs_dense": "{:.1f}x", "mean_saving_vs_exact": "{:.2f}x"}  # fmt: skip
    print(table(summary["per_task_tolerance"], cols, fmt))
    print(f"\n{summary['passed']}/{summary['cases']} cases with drop <= tolerance + 1 point "
          f"({100 * summary['pass_rate']:.0f} %; acceptance >= 90 %: "
          f"{'met' if summary['accepted'] else 'NOT met'}); wrote {args.out}")  # fmt: skip
    return payload


if __name__ == "__main__":
    main()
