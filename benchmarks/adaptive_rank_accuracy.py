"""Adaptive-rank layers against nn.Linear: test accuracy and energy per sample, side by side.

The same network is trained with ``nn.Linear`` layers and with ``LoRAven`` layers in each mode
(every layer in that mode), under one protocol: Adam (lr 1e-3), batches of 32, 20 epochs,
cross-entropy, the same seed for initial weights and batch order. LoRAven is used as the guide
uses it, a drop-in replacement with nothing else changed. A second comparison runs the ADLRNS
quick start: ``DynamicLowRankLayer`` (seed config: r_min 4, r_max 64, scorer_hidden 32, 8 gate
blocks, energy_aware scheduler with alpha 1 and beta 0.1, energy penalty 0.01, lr 1e-4,
batch 64, 100 epochs) against an nn.Linear MLP, both under ``ADLRNSTrainer`` with that config;
the dynamic model is also run with alpha 0.1, to show what the seed's energy weight costs.
The trainer calibrates each dynamic layer's rank floor after every epoch (``train.rank_tolerance``
0.5 point on the epoch's first 1,024 training samples, the default); ``floor`` is the mean of
the floors it set, ``rank`` the mean rank the layer gave the test samples.

Targets (issue 16): accuracy within 0.5 point of nn.Linear for ``high_performance``, 1 point
for ``balanced``, 3 points for ``low_power``, mean of 5 seeds.

Energy per sample: ``PerfEstimator()`` (default profile: H100 SXM FP32, 10.5 pJ/FLOP, datasheet
peak / TDP, REFERENCES.md §C) for the ranks the scheduler gave each test sample, plus each
layer's complexity scorer; nn.Linear layers at their dense cost. Two references for what a
mode promises: ``seed`` — the guide's preset (REFERENCES.md §G) for the same layers, each at
the seed's ``max_rank`` for its mode times ``min(1, energy multiplier)``; ``cap`` — the sum of
the layers' per-sample budgets as LoRAven sets them (the same, with ranks raised to the
output-width floor). ``≤seed`` says whether the measured energy is within the seed's figure.

Data (real, no downloads):
- digits: sklearn 8×8 digits (64 features), 5-fold stratified cross-validation; seed k trains
  on 4 folds and tests on fold k, so the 5 seeds together test every one of the 1,797 images.
  Networks 64→128→10 and 64→256→128→10.
- BasicMotions: aeon, windows of 20 steps × 6 channels (120 features, stride 5) labelled with
  their series' class, the series' own train/test split (680 / 680 windows). Network
  120→128→4; seeds change initial weights and batch order.

    python benchmarks/adaptive_rank_accuracy.py [--quick] [--out results/adaptive_rank_accuracy.json]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, write_json

from braingate.energy import PerfEstimator
from braingate.nn.loraven import MODE_PRESETS, LoRAven, preset_ranks

MODES = tuple(MODE_PRESETS)
TARGET_POINTS = {"high_performance": 0.5, "balanced": 1.0, "low_power": 3.0}
EST = PerfEstimator()  # H100 SXM FP32 default profile (cited in braingate.energy.estimator)
EPOCHS, LR, BATCH = 20, 1e-3, 32
# The seed's energy weight (1.0) and a tenth of it: how much accuracy the seed's trade-off costs.
ADLRNS_ALPHAS = (1.0, 0.1)
# The ADLRNS README's example config (seed 001, "实验配置"), with its 100 epochs.
SEED_CONFIG = {
    "model": {"r_min": 4, "r_max": 64, "scorer_hidden": 32, "num_gate_blocks": 8},
    "train": {"batch_size": 64, "epochs": 100, "lr": 1e-4, "energy_penalty_weight": 0.01,
              "progress": False},
    "scheduler": {"type": "energy_aware", "energy_budget_mJ_per_sample": 5.0, "alpha": 1.0,
                  "beta": 0.1},
}  # fmt: skip


# -- data ----------------------------------------------------------------------------------------
def _standardise(xtr: np.ndarray, xte: np.ndarray) -> tuple[Tensor, Tensor]:
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0) + 1e-6
    conv = lambda a: torch.tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
    return conv(xtr), conv(xte)


def digits_split(seed: int, folds: int = 5) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fold ``seed`` of a stratified 5-fold split of sklearn digits (standardised on train)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import StratifiedKFold

    d = load_digits()
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(d.data, d.target))
    tr, te = splits[seed % folds]
    xtr, xte = _standardise(d.data[tr], d.data[te])
    return xtr, torch.as_tensor(d.target[tr]), xte, torch.as_tensor(d.target[te])


_BM: tuple | None = None


def basicmotions_split(seed: int, window: int = 20, stride: int = 5) -> tuple:
    """BasicMotions windows with the series' own split (the same for every seed)."""
    global _BM
    if _BM is None:
        from aeon.datasets import load_classification

        parts = []
        for split in ("train", "test"):
            X, y = load_classification("BasicMotions", split=split)  # (40, 6, 100)
            classes = sorted(set(y.tolist()))
            starts = range(0, X.shape[2] - window + 1, stride)
            xs = np.stack([X[:, :, s : s + window].reshape(len(X), -1) for s in starts], axis=1)
            ys = np.repeat(np.array([classes.index(v) for v in y]), len(starts))
            parts.append((xs.reshape(-1, xs.shape[-1]), ys))
        xtr, xte = _standardise(parts[0][0], parts[1][0])
        _BM = (xtr, torch.as_tensor(parts[0][1]), xte, torch.as_tensor(parts[1][1]))
    return _BM


TASKS = {
    "digits 64-128-10": (digits_split, [64, 128, 10]),
    "digits 64-256-128-10": (digits_split, [64, 256, 128, 10]),
    "BasicMotions 120-128-4": (basicmotions_split, [120, 128, 4]),
}


# -- models --------------------------------------------------------------------------------------
def build(dims: list[int], kind: str, **kw) -> nn.Sequential:
    """``Linear/LoRAven -> ReLU -> ... -> Linear/LoRAven``; ``kind`` is ``linear`` or a mode."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b) if kind == "linear" else LoRAven(a, b, mode=kind, **kw))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def train(model: nn.Module, xtr: Tensor, ytr: Tensor, seed: int, epochs: int = EPOCHS) -> None:
    """Adam, batches of ``BATCH``, cross-entropy: the plain loop a drop-in layer must survive."""
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr), generator=gen).split(BATCH):
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def dense_mJ(dims: list[int]) -> float:
    pairs = itertools.pairwise(dims)
    return sum(EST.estimate_dense((a, b))["energy_mJ_per_sample"] for a, b in pairs)


def seed_mJ(dims: list[int], mode: str) -> float:
    """Each layer at the seed's ``max_rank`` for ``mode``, times ``min(1, multiplier)``."""
    mult = min(1.0, MODE_PRESETS[mode].energy_multiplier)
    return sum(mult * EST.estimate((a, b), preset_ranks(a, b, mode)[0])["energy_mJ_per_sample"]
               for a, b in itertools.pairwise(dims))  # fmt: skip


def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> dict:
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    lay = [m for m in model.modules() if isinstance(m, LoRAven)]
    if not lay:
        dims = [m.in_features for m in model if isinstance(m, nn.Linear)]
        dims.append(model[-1].out_features)
        return {"acc": acc, "energy_mJ": dense_mJ(dims)}
    return {
        "acc": acc,
        "energy_mJ": sum(float(m.layer.last_energy_mJ.mean()) for m in lay),
        "cap_mJ": sum(min(m.energy_budget, float(m.layer.energy_table(len(x))[-1])) for m in lay),
        "ranks": [float(m.layer.last_ranks.float().mean()) for m in lay],
        "rank_range": [[m.min_rank, m.max_rank] for m in lay],
        "rank_std": [float(m.layer.last_ranks.float().std()) for m in lay],
    }


# -- ADLRNS quick start under its trainer ----------------------------------------------------------
class _LinearMLP(nn.Module):
    def __init__(self, n: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n, hidden), nn.ReLU(), nn.Linear(hidden, classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def adlrns(split, dims: list[int], seed: int, epochs: int, alphas=(1.0,)) -> dict:
    """``DynamicMLP`` (the runner's model) vs an nn.Linear MLP, both under ``ADLRNSTrainer``;
    the dynamic model once per energy weight ``alpha`` of the energy-aware scheduler."""
    from torch.utils.data import DataLoader, TensorDataset

    from braingate.experiments import DynamicMLP
    from braingate.train import ADLRNSTrainer

    xtr, ytr, xte, yte = split(seed)
    n, hidden, classes = dims[0], dims[1], dims[-1]
    m = SEED_CONFIG["model"]
    out = {}
    for kind in ("linear", *(f"alpha={a:g}" for a in alphas)):
        cfg = {**SEED_CONFIG, "train": {**SEED_CONFIG["train"], "epochs": epochs, "seed": seed}}
        if kind != "linear":
            cfg["scheduler"] = {**cfg["scheduler"], "alpha": float(kind.split("=")[1])}
        torch.manual_seed(seed)
        model = (
            _LinearMLP(n, hidden, classes)
            if kind == "linear"
            else DynamicMLP(n, hidden, classes, m["r_min"], min(m["r_max"], n, hidden),
                            m["scorer_hidden"], m["num_gate_blocks"])
        )  # fmt: skip
        loader = DataLoader(
            TensorDataset(xtr, ytr),
            batch_size=cfg["train"]["batch_size"],
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the seed's 5 mJ budget never binds
            ADLRNSTrainer(model, cfg, "cpu", save_dir=tmp).train(loader, None, epochs)
        model.eval()
        with torch.no_grad():
            acc = float((model(xte).argmax(1) == yte).float().mean())
        if kind == "linear":
            out[kind] = {"acc": acc, "energy_mJ": dense_mJ([n, hidden, classes])}
        else:
            lay = model.dyn
            energy = float(lay.last_energy_mJ.mean()) + dense_mJ([hidden, classes])
            out[kind] = {
                "acc": acc,
                "energy_mJ": energy,
                "rank": float(lay.last_ranks.float().mean()),
                "floor": lay.rank_floor,
            }
    return out


# -- runs ----------------------------------------------------------------------------------------
def run_task(name: str, seeds: list[int], epochs: int, modes=MODES, **kw) -> dict:
    split, dims = TASKS[name]
    per = {k: [] for k in ("linear", *modes)}
    for seed in seeds:
        xtr, ytr, xte, yte = split(seed)
        for kind in per:
            torch.manual_seed(seed)
            model = build(dims, kind, **({} if kind == "linear" else kw))
            train(model, xtr, ytr, seed, epochs)
            per[kind].append(evaluate(model, xte, yte))
    lin = per["linear"]
    rows = [{"task": name, "model": "nn.Linear", "acc": float(np.mean([r["acc"] for r in lin])),
             "gap_pts": 0.0, "target_pts": None, "energy_mJ": lin[0]["energy_mJ"],
             "seed_mJ": None, "cap_mJ": None, "vs_linear": 1.0}]  # fmt: skip
    for mode in modes:
        res = per[mode]
        gaps = [100 * (a["acc"] - r["acc"]) for a, r in zip(lin, res)]  # paired by seed
        energy = float(np.mean([r["energy_mJ"] for r in res]))
        promise = seed_mJ(dims, mode)
        rows.append({
            "task": name, "model": f"LoRAven {mode}", "acc": float(np.mean([r["acc"] for r in res])),
            "gap_pts": float(np.mean(gaps)), "gap_std_pts": float(np.std(gaps)),
            "target_pts": TARGET_POINTS[mode], "pass_acc": bool(np.mean(gaps) <= TARGET_POINTS[mode]),
            "energy_mJ": energy, "seed_mJ": promise, "within_seed": bool(energy <= promise * (1 + 1e-9)),
            "cap_mJ": float(np.mean([r["cap_mJ"] for r in res])),
            "vs_linear": energy / lin[0]["energy_mJ"],
            "mean_ranks": np.mean([r["ranks"] for r in res], axis=0).round(2).tolist(),
            "rank_ranges": res[0]["rank_range"],
            "rank_std_within_batch": np.mean([r["rank_std"] for r in res], axis=0).round(2).tolist(),
        })  # fmt: skip
    return {"task": name, "dims": dims, "rows": rows,
            "per_seed": {k: [r["acc"] for r in v] for k, v in per.items()}}  # fmt: skip


def run_adlrns(name: str, seeds: list[int], epochs: int, alphas=ADLRNS_ALPHAS) -> dict:
    split, dims = TASKS[name]
    res = [adlrns(split, dims, s, epochs, alphas) for s in seeds]
    lin = [r["linear"] for r in res]
    rows = []
    for a in alphas:
        dyn = [r[f"alpha={a:g}"] for r in res]
        gaps = [100 * (x["acc"] - d["acc"]) for x, d in zip(lin, dyn)]
        rows.append({"alpha": a, "acc": float(np.mean([d["acc"] for d in dyn])),
                     "gap_pts": float(np.mean(gaps)), "gap_std_pts": float(np.std(gaps)),
                     "energy_mJ": float(np.mean([d["energy_mJ"] for d in dyn])),
                     "rank": float(np.mean([d["rank"] for d in dyn])),
                     "floors": [d["floor"] for d in dyn],
                     "vs_linear": float(np.mean([d["energy_mJ"] for d in dyn])) / lin[0]["energy_mJ"],
                     "pass_balanced": bool(np.mean(gaps) <= TARGET_POINTS["balanced"])})  # fmt: skip
    return {"task": name, "epochs": epochs, "linear_acc": float(np.mean([x["acc"] for x in lin])),
            "linear_mJ": lin[0]["energy_mJ"], "dynamic": rows}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 3 epochs, one task (smoke test)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default="results/adaptive_rank_accuracy.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = list(range(1 if args.quick else args.seeds))
    epochs = 3 if args.quick else EPOCHS
    tasks = ["digits 64-128-10"] if args.quick else list(TASKS)
    t0 = time.perf_counter()
    results = [run_task(name, seeds, epochs) for name in tasks]
    adl_epochs = 3 if args.quick else SEED_CONFIG["train"]["epochs"]
    adl = [run_adlrns(name, seeds, adl_epochs) for name in tasks if len(TASKS[name][1]) == 3]
    payload = {"benchmark": "adaptive_rank_accuracy", "quick": args.quick, "seeds": seeds,
               "protocol": {"epochs": epochs, "lr": LR, "batch": BATCH, "optimizer": "Adam"},
               "energy": "PerfEstimator() energy_mJ per sample (H100 SXM FP32, 10.5 pJ/FLOP), "
                         "scheduled ranks + scorers", "targets_pts": TARGET_POINTS,
               "machine": machine(), "results": results, "adlrns": adl,
               "wall_s": time.perf_counter() - t0}  # fmt: skip
    out = Path(args.out)
    write_json(out, payload)
    nj = lambda v: "" if v is None else f"{1e6 * v:.1f}"  # noqa: E731
    rows = [
        {**r, "acc%": 100 * r["acc"], "gap": r["gap_pts"], "target": r["target_pts"] or "",
         "ok": r.get("pass_acc", ""), "nJ": 1e6 * r["energy_mJ"], "seed nJ": nj(r["seed_mJ"]),
         "cap nJ": nj(r["cap_mJ"]), "<=seed": r.get("within_seed", ""),
         "ranks": r.get("mean_ranks", "")}
        for res in results for r in res["rows"]
    ]  # fmt: skip
    print(table(rows, ["task", "model", "acc%", "gap", "target", "ok", "nJ", "vs_linear",
                       "seed nJ", "<=seed", "cap nJ", "ranks"],
                {"acc%": "{:.2f}", "gap": "{:+.2f}", "nJ": "{:.1f}", "vs_linear": "{:.2f}"}))  # fmt: skip
    print("\ngap: nn.Linear minus LoRAven accuracy, points, mean over seeds (paired); nJ: energy "
          "per sample (PerfEstimator, H100 FP32); seed: the guide's preset for these layers; cap: "
          "LoRAven's per-sample budgets; ranks: mean scheduled rank per layer on the test set")  # fmt: skip
    for a in adl:
        print(f"\nADLRNS quick start under ADLRNSTrainer ({a['task']}, seed config, {a['epochs']} "
              f"epochs): nn.Linear MLP {100 * a['linear_acc']:.2f} % at {1e6 * a['linear_mJ']:.1f} nJ")  # fmt: skip
        for r in a["dynamic"]:
            print(f"  DynamicLowRankLayer, energy_aware alpha={r['alpha']:g}: {100 * r['acc']:.2f} % "
                  f"(gap {r['gap_pts']:+.2f} points) at {1e6 * r['energy_mJ']:.1f} nJ "
                  f"({r['vs_linear']:.2f}x nn.Linear), mean rank {r['rank']:.1f}, floors "
                  f"{r['floors']}")  # fmt: skip
    print(f"\nwall {payload['wall_s']:.0f} s; JSON {out}")
    return payload


if __name__ == "__main__":
    main()
