"""Per-step cost of the event runtime at batch 1, this checkout against another one.

Measures, at batch 1 and one thread:

- ``chain`` / ``modules``: a small network (8→128→128→10, ReLU, θ = 0.05 on the first two
  layers) where the runtime's per-step bookkeeping, not the arithmetic, dominates — compiled
  chain and module-by-module stepping;
- ``linear_a1`` / ``linear_a5`` / ``linear_a100``: one EventLinear(1024, 1024, rank 128) module
  call on the stream of ``benchmarks/event_vs_dense.py`` (inputs jump by ±1 with probability
  1 %, 5 %, 100 %, θ = 0.5, θ_z = 0.3);
- ``snn_chain``: the network of ``benchmarks/snn_vs_snntorch.py`` (64→1024→1024→10 with LIF
  neurons, rank 128, 5 % input spikes) through the compiled chain.

With ``--baseline PATH`` the same probe also runs on another checkout of braingate (e.g. an
older commit in a git worktree), in alternating separate processes, so the two are compared
under the same machine load: the ratios this/baseline are the regression test of the runtime's
per-step cost.

    python benchmarks/runtime_overhead.py [--baseline /path/to/other/checkout] [--rounds 3]

Writes ``results/runtime_overhead.json`` and prints a table: µs per step, the best of 7
repetitions per process and of the rounds (on a shared machine the best run is the one least
disturbed by other jobs; both checkouts get the same number of tries).
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
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import write_json

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

def jumps(T, n, activity, seed):
    g = torch.Generator().manual_seed(seed)
    flips = (torch.rand(T, 1, n, generator=g) < activity).float()
    sign = torch.where(torch.rand(T, 1, n, generator=g) < 0.5, -1.0, 1.0)
    return list(torch.cumsum(flips * sign, 0).unbind(0))

lin = bg.EventLinear(1024, 1024, 128, threshold=0.5, latent_threshold=0.3)
bg.execution(lin, "event")
streams = {a: jumps(200, 1024, a / 100, a) for a in (1, 5, 100)}

def run_stream(f, ys):
    bg.reset(lin)
    with torch.no_grad():
        for s in ys[:10]:
            f(s)
        t0 = time.perf_counter()
        for s in ys[10:]:
            f(s)
    return (time.perf_counter() - t0) / (len(ys) - 10) * 1e6

snn = torch.nn.Sequential(
    bg.EventLinear(64, 1024, 64), bg.nn.LIF(1024),
    bg.EventLinear(1024, 1024, 128), bg.nn.LIF(1024),
    bg.EventLinear(1024, 10, 10), bg.nn.LIF(10),
)
with torch.no_grad():
    for m in snn:
        if isinstance(m, bg.EventLinear):
            m.s.mul_(4.0)
bg.execution(snn, "event")
snn_chain = bg.sim.compile_events(snn)
g = torch.Generator().manual_seed(1)
spikes = [(torch.rand(1, 64, generator=g) < 0.05).float() for _ in range(200)]

def run_snn():
    bg.reset(snn)
    with torch.no_grad():
        for s in spikes[:10]:
            snn_chain(s)
        t0 = time.perf_counter()
        for s in spikes[10:]:
            snn_chain(s)
    return (time.perf_counter() - t0) / (len(spikes) - 10) * 1e6

res = {k: [] for k in ("modules", "chain", "linear_a1", "linear_a5", "linear_a100", "snn_chain")}
for _ in range(7):
    res["modules"].append(run(net))
    res["chain"].append(run(chain))
    for a, ys in streams.items():
        res[f"linear_a{a}"].append(run_stream(lin, ys))
    res["snn_chain"].append(run_snn())
print(json.dumps({k: float(np.min(v)) for k, v in res.items()}))
"""

KEYS = ("chain", "modules", "linear_a1", "linear_a5", "linear_a100", "snn_chain")


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
    result = {name: {k: min(r[k] for r in rs) for k in KEYS} for name, rs in runs.items()}
    print(f"{'µs per step':<14}" + "".join(f"{n:>12}" for n in result)
          + ("   this/baseline" if "baseline" in result else ""))  # fmt: skip
    for k in KEYS:
        line = f"{k:<14}" + "".join(f"{r[k]:>12.2f}" for r in result.values())
        if "baseline" in result:
            line += f"{result['this'][k] / result['baseline'][k]:>16.3f}"
        print(line)
    write_json(a.out, {"runs": runs, "best": result})
    return result


if __name__ == "__main__":
    main()
