"""The main comparison (examples/02) over several training seeds: how much its headline moves.

`make demo` reports one run (seed 0). This reruns the same recipe — dense training, SVD
conversion, calibration, fine-tuning with events in the loop, batch-1 timing — for each seed and
reports per dataset the test accuracy of the dense and event networks, the synops ratio, and the
per-step and per-stream wall-clock speedups over dense full-rank, with their spread. The data
splits are fixed (aeon's own split; digits 70/30 with seed 0); only the training seed varies.

    python benchmarks/e2e_seeds.py [--seeds 0 1 2 3 4] [--no-budget] [--out results/e2e_seeds.json]
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "examples"))
from _common import machine, table, write_json

FULL, LOW, EVENT = "dense full-rank", "dense low-rank", "event-driven (fine-tuned)"


def headline(res: dict) -> dict:
    """The figures the issue's acceptance is about, from one ``run`` of examples/02."""
    rows = res["rows"]
    return {
        "dataset": res["dataset"],
        "seed": res["seed"],
        "acc_dense": 100 * rows[FULL]["accuracy"],
        "acc_event": 100 * rows[EVENT]["accuracy"],
        "acc_drop": 100 * (rows[FULL]["accuracy"] - rows[EVENT]["accuracy"]),
        "synops_ratio": rows[EVENT]["ratio"],
        "speedup_step": res["speedup_event_vs_dense"],
        "speedup_stream": res["speedup_per_stream_with_reset"],
        "seconds": res["seconds"],
    }


def summary(rows: list[dict]) -> list[dict]:
    """Mean, min and max of each figure per dataset."""
    out = []
    keys = ["acc_dense", "acc_event", "acc_drop", "synops_ratio", "speedup_step", "speedup_stream"]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        for stat, fn in (("mean", statistics.fmean), ("min", min), ("max", max)):
            out.append({"dataset": name, "seed": stat, **{k: fn(r[k] for r in mine) for k in keys}})
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--datasets", nargs="+", default=["BasicMotions", "digits"])
    ap.add_argument("--quick", action="store_true", help="tiny networks and data (smoke test)")
    ap.add_argument(
        "--no-budget",
        action="store_true",
        help="fine-tune with the plain activity penalty (no synops budget)",
    )
    ap.add_argument("--out", default="results/e2e_seeds.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # as examples/02: batch-1 timing on one core for both paths
    ex = importlib.import_module("02_compare_event_vs_dense")
    for setup in ex.SETUPS.values() if args.no_budget else ():
        setup.target_ratio = None
    rows = [
        headline(ex.run(name, args.quick, seed)) for seed in args.seeds for name in args.datasets
    ]
    rows.sort(key=lambda r: (r["dataset"], r["seed"]))
    summ = summary(rows)
    cols = ["dataset", "seed", "acc_dense", "acc_event", "acc_drop", "synops_ratio",
            "speedup_step", "speedup_stream"]  # fmt: skip
    fmt = dict.fromkeys(cols[2:5], "{:.1f}") | dict.fromkeys(cols[5:], "{:.2f}")
    print(table(rows + summ, cols, fmt))
    payload = {"machine": machine(), "quick": args.quick, "budget": not args.no_budget,
               "rows": rows, "summary": summ,
               "command": "python benchmarks/e2e_seeds.py " + " ".join(argv or sys.argv[1:])}  # fmt: skip
    print("wrote", write_json(args.out, payload))
    return payload


if __name__ == "__main__":
    main()
