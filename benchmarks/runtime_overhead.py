"""Per-step cost of the event runtime at batch 1: compiled chain and module-by-module stepping.

Measures a small network (8→128→128→10, ReLU, θ = 0.05 on the first two layers) where the
runtime's per-step bookkeeping, not the arithmetic, dominates. With ``--baseline PATH`` the same
measurement also runs on another checkout of braingate (e.g. an older commit in a git worktree),
in alternating separate processes, so the two are compared under the same machine load.

    python benchmarks/runtime_overhead.py [--baseline /path/to/other/checkout] [--rounds 3]

Writes ``results/runtime_overhead.json`` and prints a table (median µs per step over rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, torch
import braingate as bg
torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(
    bg.EventLinear(8, 128, 8, threshold=0.05), torch.nn.ReLU(),
    bg.EventLinear(128, 128, 16, threshold=0.05), torch.nn.ReLU(),
    bg.EventLinear(128, 10, 8),
)
bg.execution(net, "event")
chain = bg.sim.compile_events(net)
xs = [0.3 * torch.randn(1, 8) for _ in range(400)]

def run(f):
    bg.reset(net)
    with torch.no_grad():
        for s in xs[:20]:
            f(s)
        t0 = time.perf_counter()
        for s in xs:
            f(s)
    return (time.perf_counter() - t0) / len(xs) * 1e6

res = {"modules": [], "chain": []}
for _ in range(9):
    res["modules"].append(run(net))
    res["chain"].append(run(chain))
print(json.dumps({k: float(np.median(v)) for k, v in res.items()}))
"""


def measure(tree: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:  # outside both checkouts' source folders
        out = subprocess.run(
            [sys.executable, "-c", PROBE, str(tree)],
            capture_output=True, text=True, check=True, cwd=tmp,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", type=Path, help="another braingate checkout to compare with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default="results/runtime_overhead.json")
    a = p.parse_args(argv)
    trees = {"this": ROOT} | ({"baseline": a.baseline.resolve()} if a.baseline else {})
    runs: dict[str, list[dict]] = {k: [] for k in trees}
    for _ in range(a.rounds):  # alternating: both see the same load
        for name, tree in trees.items():
            runs[name].append(measure(tree))
    result = {
        name: {k: sorted(r[k] for r in rs)[len(rs) // 2] for k in ("modules", "chain")}
        for name, rs in runs.items()
    }
    print(f"{'checkout':<10}{'chain µs/step':>15}{'modules µs/step':>18}")
    for name, r in result.items():
        print(f"{name:<10}{r['chain']:>15.2f}{r['modules']:>18.2f}")
    if "baseline" in result:
        for k in ("chain", "modules"):
            ratio = result["this"][k] / result["baseline"][k]
            print(f"{k}: this / baseline = {ratio:.3f}")
    path = Path(a.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"runs": runs, "median": result}, indent=1) + "\n")
    os.replace(tmp, path)
    return result


if __name__ == "__main__":
    main()
