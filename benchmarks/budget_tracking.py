"""Budget tracking on a real stream (BasicMotions): the `budget` scheduler vs a target.

Stream: the 40 BasicMotions test series (6 channels, 100 steps); at step t a sample's input
is its last 10 steps (60 features). A DynamicLowRankLayer(60, 64, r_max=48, 12 blocks) scores
each step by input change (InputChangeScorer) and the `budget` scheduler keeps the mean
energy per sample at 40 % of the full-r_max energy (PerfEstimator default: H100 FP32).
Writes JSON (default results/budget_tracking.json) and prints a table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json

from braingate.nn.dynamic import DynamicLowRankLayer
from braingate.scheduling import BudgetManager, InputChangeScorer, RankScheduler

WINDOW = 10


def stream() -> torch.Tensor:
    from aeon.datasets import load_classification

    X, _ = load_classification("BasicMotions", split="test")  # (40, 6, 100)
    X = torch.tensor(np.asarray(X), dtype=torch.float32)
    X = (X - X.mean(dim=(0, 2), keepdim=True)) / X.std(dim=(0, 2), keepdim=True)
    steps = [X[:, :, t - WINDOW : t].reshape(X.shape[0], -1) for t in range(WINDOW, X.shape[2] + 1)]
    return torch.stack(steps)  # (T, B, 60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="results/budget_tracking.json")
    ap.add_argument("--fraction", type=float, default=0.4)
    args = ap.parse_args()
    torch.manual_seed(0)
    xs = stream()
    layer = DynamicLowRankLayer(
        60, 64, r_max=48, r_min=4, num_gate_blocks=12, scorer=InputChangeScorer()
    )
    full = float(layer.energy_table(xs.shape[1])[-1])
    target = args.fraction * full
    manager = BudgetManager(
        total_budget=target, window_size=100, safety_margin=0.0, adaptation_rate=0.01
    )
    layer.scheduler = RankScheduler("budget", r_min=4, r_max=48, manager=manager, layer_id="l0")
    energies, ranks_all = [], []
    with torch.no_grad():
        for x in xs:
            _, ranks = layer(x)
            energies.append(float(layer.last_energy_mJ.mean()))
            ranks_all.append(ranks.float())
    e = np.array(energies)
    r = torch.stack(ranks_all)
    res = {
        "dataset": "BasicMotions test (40 series), 91 sliding-window steps",
        "target_mJ_per_sample": target,
        "full_rank_mJ_per_sample": full,
        "realised_mean_mJ_per_sample": float(e.mean()),
        "relative_error": float(e.mean() / target - 1.0),
        "per_step_rel_error_max": float(np.abs(e / target - 1.0).max()),
        "mean_rank": float(r.mean()),
        "within_step_rank_std": float(r.std(dim=1).mean()),
        "pass_within_5pct": bool(abs(e.mean() / target - 1.0) <= 0.05),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, res)
    print(f"{'metric':32s} value")
    for k, v in res.items():
        print(f"{k:32s} {v}")


if __name__ == "__main__":
    main()
