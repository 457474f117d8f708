"""hwmaps benchmark: NoC energy of the four mapping methods on networks from real runs.

Networks: MLPs trained briefly on real data (sklearn digits, aeon BasicMotions and GunPoint),
converted to EventLinear (truncated SVD, gate blocks, thresholds), simulated in event mode on the
test split; :func:`hwmaps.extract` turns model + trace into a Network. Each network is mapped on
loihi, truenorth and generic(1024) by every method; we report NoC energy per step, the ratios
traffic/sequential (target <= 0.5) and traffic/metis_anneal (target <= 0.85), a lower bound on
the NoC energy of any valid placement (hwmaps.bound; where 0.5x sequential is below it the target
is unreachable, and the table says so), and the mapping time of a ~10^6-synapse network on
generic(1024) (target < 10 s).

    python benchmarks/mapping.py [--out results/mapping.json] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "examples"), str(ROOT / "benchmarks")]
from _common import write_json
from _data import aeon_stream, digits, row_frames

import braingate as bg
import hwmaps
from hwmaps.bound import noc_lower_bound

CHIPS = {"loihi": {}, "truenorth": {}, "generic": {"cores": 1024}}


def windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(T, B, C) -> (T-w+1, B, w·C): the last w steps of every channel, one window per step."""
    return torch.stack([x[t : t + w].permute(1, 0, 2).reshape(x.shape[1], -1)
                        for t in range(x.shape[0] - w + 1)])  # fmt: skip


def train_mlp(x, y, sizes, epochs, seed=0):
    """A ReLU MLP trained with Adam on (N, F) -> labels; returns (model, train accuracy)."""
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    model = nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i : i + 128]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        acc = (model(x).argmax(-1) == y).float().mean().item()
    return model, acc


def real_network(name, stream, ytr, test, yte, hidden, rank, blocks, epochs, theta=0.1):
    """Train, convert, simulate (event mode) and extract one network."""
    T, B, F = stream.shape
    x = stream.reshape(T * B, F)
    y = ytr.repeat(T)
    model, acc = train_mlp(x, y, [F, *hidden, int(ytr.max()) + 1], epochs)
    ev = bg.convert(model, rank=rank, blocks=blocks, threshold=theta, latent_threshold=theta)
    ys, report = bg.simulate(ev, test, mode="event")
    test_acc = (ys[-1].argmax(-1) == yte).float().mean().item()
    net = hwmaps.extract(ev, report, name=name)
    info = {"train_acc_dense": acc, "test_acc_event_last_step": test_acc, "steps": T,
            "synapses": net.synapses, "neurons": net.neurons,
            "synops_per_step": report.total["synops"] / report.meta["steps"],
            "dense_synops_per_step": report.total["dense_synops"] / report.meta["steps"]}  # fmt: skip
    return net, info


def networks(quick: bool):
    """The benchmark networks from real runs: [(net, info)]."""
    out = []
    d = digits()
    tr, te = row_frames(d.x_train), row_frames(d.x_test)[:, :120]
    out.append(real_network("digits-mlp", tr, d.y_train, te, d.y_test[:120],
                            [512, 512], 32, 4, 3 if quick else 15))  # fmt: skip
    bm = aeon_stream("BasicMotions")
    out.append(real_network("basicmotions-mlp", windows(bm.x_train, 10), bm.y_train,
                            windows(bm.x_test, 10), bm.y_test, [512, 512], 32, 4,
                            2 if quick else 10))  # fmt: skip
    gp = aeon_stream("GunPoint")
    out.append(real_network("gunpoint-mlp", windows(gp.x_train, 30), gp.y_train,
                            windows(gp.x_test, 30)[::2], gp.y_test, [256, 256], 16, 2,
                            2 if quick else 10))  # fmt: skip
    big = [2048, 2048, 2048]
    out.append(real_network("digits-wide-1M", tr, d.y_train, te[:, :32], d.y_test[:32],
                            big, 96, 8, 1 if quick else 3))  # fmt: skip
    return out


def ratio(a: float, b: float) -> float | None:
    """a / b, or None when both are 0 (no NoC traffic at all), inf when only b is 0."""
    if b == 0:
        return None if a == 0 else float("inf")
    return a / b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "results" / "mapping.json"))
    ap.add_argument("--quick", action="store_true", help="fewer training epochs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    methods = hwmaps.methods.names()
    rows, nets = [], {}
    for net, info in networks(args.quick):
        nets[net.name] = info
        for chip_name, kw in CHIPS.items():
            chip = hwmaps.chips.get(chip_name, **kw)
            res = {}
            for m in methods:
                t0 = time.perf_counter()
                p = hwmaps.map_network(net, chip, m, seed=args.seed)
                dt = time.perf_counter() - t0
                e = hwmaps.estimate(p)
                res[m] = {"noc_j": e.breakdown["noc"], "total_j": e.total_j,
                          "spikes_j": e.breakdown["spikes"], "cores": e.cores_used,
                          "mean_hops": e.hops["mean"], "latency_s": e.latency_s_per_step,
                          "map_time_s": dt}  # fmt: skip
            noc = {m: res[m]["noc_j"] for m in methods}
            lb = noc_lower_bound(net, chip)
            rows.append({"network": net.name, "chip": chip.name, "synapses": net.synapses,
                         "methods": res, "noc_lower_bound_j": lb,
                         "traffic_over_bound": ratio(noc["traffic"], lb),
                         # the 0.5x-sequential target is reachable only if it is >= the bound
                         "seq_target_reachable": bool(0.5 * noc["sequential"] >= lb * (1 - 1e-9)),
                         "traffic_over_sequential": ratio(noc["traffic"], noc["sequential"]),
                         "traffic_over_metis_anneal": ratio(noc["traffic"], noc["metis_anneal"])})  # fmt: skip
    summary = summarise(rows)
    payload = {"benchmark": "hwmaps mapping", "networks": nets, "rows": rows, "summary": summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, payload)
    print_table(rows, summary)
    png = plot(rows, out.with_suffix(".png"))
    print(f"wrote {out} and {png}")


def summarise(rows) -> dict:
    """Geometric means of the ratios (cases where both are defined) and the timing figure."""

    def gmean(key):
        v = [r[key] for r in rows if r[key] is not None and np.isfinite(r[key]) and r[key] > 0]
        zero = sum(1 for r in rows if r[key] == 0)
        return {"geomean_nonzero": float(np.exp(np.mean(np.log(v)))) if v else None,
                "max": max((r[key] for r in rows if r[key] is not None), default=None),
                "cases": len(v), "zero_cases": zero,
                "undefined_cases": sum(1 for r in rows if r[key] is None)}  # fmt: skip

    big = [r for r in rows if r["network"] == "digits-wide-1M" and r["chip"] == "generic"]
    times = {m: v["map_time_s"] for m, v in big[0]["methods"].items()} if big else {}
    return {"traffic_over_sequential": gmean("traffic_over_sequential"),
            "traffic_over_metis_anneal": gmean("traffic_over_metis_anneal"),
            "map_time_1M_generic1024_s": times,
            "seq_target_unreachable": [f"{r['network']}/{r['chip']}" for r in rows
                                       if not r["seq_target_reachable"]],
            "synapses_1M": big[0]["synapses"] if big else None}  # fmt: skip


def print_table(rows, summary) -> None:
    """A plain-text table: NoC energy (pJ per step) per method and the two ratios."""
    methods = list(rows[0]["methods"])
    head = f"{'network':<18}{'chip':<11}" + "".join(f"{m:>14}" for m in methods)
    print(head + f"{'bound':>12}{'tr/seq':>9}{'tr/metis':>9}{'tr/bound':>9}")
    print("-" * (len(head) + 39))
    for r in rows:
        f = lambda v: "   n/a" if v is None else f"{v:9.3f}"  # noqa: E731
        cells = "".join(f"{r['methods'][m]['noc_j'] * 1e12:14.2f}" for m in methods)
        mark = "" if r["seq_target_reachable"] else "  (0.5x seq < bound: unreachable)"
        print(f"{r['network']:<18}{r['chip']:<11}{cells}{r['noc_lower_bound_j'] * 1e12:12.2f}"
              f"{f(r['traffic_over_sequential'])}{f(r['traffic_over_metis_anneal'])}"
              f"{f(r['traffic_over_bound'])}{mark}")  # fmt: skip
    print(
        "NoC energy in pJ per time step (per sample); bound: hwmaps.bound.noc_lower_bound, "
        "no valid placement spends less."
    )
    print(json.dumps(summary, indent=1))


def plot(rows, path: Path) -> Path:
    """Grouped bars of NoC energy per method for every (network, chip), log y (the values span
    decades; bars are whole values, not stacked); a placement with no NoC traffic is written
    as "0" instead of a bar; the legend sits above the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(rows[0]["methods"])
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.9), 4.8), layout="constrained")
    x = np.arange(len(rows))
    width = 0.8 / len(methods)
    vals = [r["methods"][m]["noc_j"] * 1e12 for r in rows for m in methods]
    low = min((v for v in vals if v > 0), default=1.0)
    for i, m in enumerate(methods):
        pos = x + (i - (len(methods) - 1) / 2) * width
        v = np.array([r["methods"][m]["noc_j"] * 1e12 for r in rows])
        ax.bar(pos[v > 0], v[v > 0], width, label=m, color=f"C{i}")
        for p in pos[v == 0]:
            ax.text(p, low / 1.5, "0", ha="center", va="top", fontsize=7, color=f"C{i}")
    ax.set_yscale("log")
    ax.set_ylim(low / 4, max(vals) * 2)
    ax.set_xticks(x, [f"{r['network']}\n{r['chip']}" for r in rows], rotation=60, fontsize=7)
    ax.set_ylabel("NoC energy per step (pJ, log; 0: no NoC traffic)")
    ax.grid(alpha=0.3, axis="y")
    fig.legend(loc="outside upper center", ncol=len(methods), fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
