"""Accuracy vs energy per sample: dense, static truncated low rank, adaptive per-sample rank.

Model: ``body (n -> 128) -> ReLU -> head (128 -> classes)``; only the body changes:

- ``dense``: ``nn.Linear`` trained from scratch (``--epochs``).
- ``static r``: ``EventLinear.from_linear(dense body, r)`` (truncated SVD of the trained dense
  model), then body and head fine-tuned for ``--finetune`` epochs at rank ``r``.
- ``adaptive``: ``DynamicLowRankLayer`` initialised from the dense body's SVD at ``r_max`` and
  fine-tuned once for the same ``--finetune`` epochs with nested ("matryoshka") training: each
  batch's loss is the static loss averaged over every prefix rank ``r_min..r_max`` (one forward,
  ``forward_ranks``), and each rank has switchable biases (a body-output and a logit offset per
  rank: table look-ups, no FLOPs). Then its complexity scorer is fitted (body frozen). At test
  time the ``budget`` scheduler hands out per-sample ranks so that the batch mean energy meets
  each budget. One adaptive model serves every budget; each static rank gets its own fine-tune.

Both fine-tunes use the same loss (cross-entropy + distillation from the dense model), optimiser,
batches and seeds. The scorer sees only the first ``r_min`` latent units ``s_j v_j^T x``, which
every sample computes anyway, so its cost is a tiny MLP (counted).

Energy: ``PerfEstimator()`` (default profile: H100 SXM FP32, 10.5 pJ/FLOP, datasheet peak / TDP,
REFERENCES.md §C), ``energy_mJ`` per sample of the whole model: body at its rank (mean over
samples for adaptive) + dense head + scorer MLP. Budgets are set so that the adaptive model's
total energy matches a static rank's; a budget point *dominates* when its realised energy is at
most that static point's and its accuracy (mean over seeds) is at least as high.

Data: sklearn digits (64 pixels flattened) and aeon BasicMotions (windows of 20 steps x 6
channels, stride 5, each labelled with its series' class; the series' own train/test split).

    python benchmarks/energy_accuracy.py [--quick] [--out results/energy_accuracy.json]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, table, write_json

from braingate.energy import PerfEstimator
from braingate.functional.lowrank import svd_factorize
from braingate.nn.dynamic import DynamicLowRankLayer
from braingate.nn.event_linear import EventLinear
from braingate.scheduling import BudgetRankScheduler, FixedRankScheduler

HIDDEN = 128
LR_ADAPT = 3e-3
EST = PerfEstimator()  # H100 SXM FP32 default profile (cited in braingate.energy.estimator)


# -- data --------------------------------------------------------------------------------------
def _standardise(xtr: np.ndarray, xte: np.ndarray) -> tuple[Tensor, Tensor]:
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0) + 1e-6
    conv = lambda a: torch.tensor((a - mu) / sd, dtype=torch.float32)  # noqa: E731
    return conv(xtr), conv(xte)


def load_digits_flat() -> dict:
    """sklearn digits, 64 features, stratified 70/30 split (fixed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    xtr, xte, ytr, yte = train_test_split(
        d.data, d.target, test_size=0.3, random_state=0, stratify=d.target
    )
    a, b = _standardise(xtr, xte)
    return {"name": "digits", "x": (a, b), "y": (torch.as_tensor(ytr), torch.as_tensor(yte)),
            "classes": 10}  # fmt: skip


def load_basicmotions_windows(window: int = 20, stride: int = 5) -> dict:
    """aeon BasicMotions: every (window x 6) slice of a series is a sample with its label."""
    from aeon.datasets import load_classification

    out = []
    for split in ("train", "test"):
        X, y = load_classification("BasicMotions", split=split)  # (40, 6, 100)
        classes = sorted(set(y.tolist()))
        starts = range(0, X.shape[2] - window + 1, stride)
        xs = np.stack([X[:, :, s : s + window].reshape(len(X), -1) for s in starts], axis=1)
        ys = np.repeat(np.array([classes.index(v) for v in y]), len(starts))
        out.append((xs.reshape(-1, xs.shape[-1]), ys))
    a, b = _standardise(out[0][0], out[1][0])
    return {"name": "BasicMotions", "x": (a, b),
            "y": (torch.as_tensor(out[0][1]), torch.as_tensor(out[1][1])), "classes": 4}  # fmt: skip


# -- models ------------------------------------------------------------------------------------
class Net(nn.Module):
    """``head(relu(body(x)))``; ``body`` may return ``(y, ranks)`` (DynamicLowRankLayer)."""

    def __init__(self, body: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(x)
        h = h[0] if isinstance(h, tuple) else h
        return self.head(F.relu(h))


class ProbeScorer(nn.Module):
    r"""Complexity = uncertainty of a linear probe on the first ``k`` latent units.

    .. math:: z = s_{1..k} \odot V_{1..k}^T x, \quad p = \mathrm{softmax}(W z + b), \quad
              c = 1 - \max_j p_j

    ``z`` are the layer's own first ``k`` rank units (every sample computes them, ``k <= r_min``),
    so the scorer only adds the probe. The factors are read detached: the scorer never moves
    the layer's weights.
    """

    def __init__(self, base: EventLinear, k: int, classes: int) -> None:
        super().__init__()
        self._base = (base,)  # not a submodule: its parameters stay the layer's
        self.k, self.classes = k, classes
        self.probe = nn.Linear(k, classes)

    def latent(self, x: Tensor) -> Tensor:
        b = self._base[0]
        return (x @ b.V[:, : self.k].detach()) * b.s[: self.k].detach()

    def logits(self, x: Tensor) -> Tensor:
        return self.probe(self.latent(x))

    def forward(self, x: Tensor) -> Tensor:
        return 1.0 - F.softmax(self.logits(x), dim=1).max(dim=1).values

    def flops(self) -> float:
        """Per-sample FLOPs of the probe and its softmax-max (``z`` is the layer's own work)."""
        return 2.0 * self.k * self.classes + 4.0 * self.classes + 1.0


class NestedNet(Net):
    """``Net`` over a ``DynamicLowRankLayer`` body with a switchable head bias per realised rank.

    ``logits_i = head(relu(body(x_i))) + d_{r_i}``; with the body's own rank bias ``c_r`` every
    nested prefix gets its own output offsets (two table rows read per sample, no FLOPs).
    """

    def __init__(self, body: DynamicLowRankLayer, head: nn.Linear) -> None:
        super().__init__(body, head)
        self.head_bias = nn.Parameter(torch.zeros(body.r_max + 1, head.out_features))

    def forward(self, x: Tensor) -> Tensor:
        h, ranks = self.body(x)
        return self.head(F.relu(h)) + self.head_bias[ranks]

    def forward_ranks(self, x: Tensor, ranks: list[int]) -> Tensor:
        """Logits at every rank of ``ranks``: ``(B, n) -> (B, K, classes)``."""
        h = self.body.forward_ranks(x, ranks)
        return self.head(F.relu(h)) + self.head_bias[torch.as_tensor(ranks)]


# -- energy ------------------------------------------------------------------------------------
def body_mJ(n: int, rank: int | None) -> float:
    """Per-sample body energy: dense ``nn.Linear`` when ``rank`` is None."""
    dims = (n, HIDDEN)
    est = EST.estimate_dense(dims) if rank is None else EST.estimate(dims, rank)
    return est["energy_mJ_per_sample"]


def head_mJ(classes: int) -> float:
    return EST.estimate_dense((HIDDEN, classes))["energy_mJ_per_sample"]


# -- training ----------------------------------------------------------------------------------
def fit(net: Net, data: dict, epochs: int, lr: float, seed: int, teacher: Net | None = None,
        params=None, ranks: list[int] | None = None) -> None:  # fmt: skip
    """Adam, batches of 64, cross-entropy (+ distillation at T=2 from ``teacher``).

    With ``ranks`` (a :class:`NestedNet`), the loss is the mean of that same loss over the
    nested prefixes ``ranks``, all from one forward ("matryoshka" training)."""
    xtr, ytr = data["x"][0], data["y"][0]
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(list(net.parameters()) if params is None else params, lr=lr)
    with torch.no_grad():
        soft = None if teacher is None else F.softmax(teacher(xtr) / 2.0, dim=1)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr), generator=gen).split(64):
            y = ytr[idx]
            if ranks is None:
                logits = net(xtr[idx])
            else:  # (B, K, C) -> (B*K, C): every rank of every sample, same loss as static
                logits = net.forward_ranks(xtr[idx], ranks).flatten(0, 1)
                y = y.repeat_interleave(len(ranks))
                idx = idx.repeat_interleave(len(ranks))
            loss = F.cross_entropy(logits, y)
            if soft is not None:
                kd = F.kl_div(F.log_softmax(logits / 2.0, dim=1), soft[idx], reduction="batchmean")
                loss = 0.5 * loss + 0.5 * 4.0 * kd
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()


def accuracy(net: Net, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def fit_probe(scorer: ProbeScorer, data: dict, epochs: int, seed: int) -> None:
    """The probe on ``z_{1..k}`` learns the labels (cross-entropy); its uncertainty is ``c``."""
    xtr, ytr = data["x"][0], data["y"][0]
    opt = torch.optim.Adam(scorer.probe.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr), generator=gen).split(64):
            loss = F.cross_entropy(scorer.logits(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def build_adaptive(dense: Net, data: dict, cfg: dict, seed: int) -> tuple[Net, ProbeScorer]:
    """SVD-initialised DynamicLowRankLayer, nested fine-tune (every rank r_min..r_max per
    batch, switchable biases), probe fit."""
    n, r_min, r_max, epochs = data["x"][0].shape[1], cfg["r_min"], cfg["r_max"], cfg["finetune"]
    torch.manual_seed(seed)
    layer = DynamicLowRankLayer(n, HIDDEN, r_max=r_max, r_min=r_min, rank_bias=True,
                                num_gate_blocks=r_max // cfg["step"])  # fmt: skip
    U, s, V, _ = svd_factorize(dense.body.weight, r_max)
    with torch.no_grad():
        layer.base.U.copy_(U), layer.base.s.copy_(s), layer.base.V.copy_(V)
        layer.base.bias.copy_(dense.body.bias)
    scorer = ProbeScorer(layer.base, r_min, data["classes"])
    layer.scorer = scorer
    net = NestedNet(layer, copy.deepcopy(dense.head))
    factor_params = [p for name, p in net.named_parameters() if "scorer" not in name]
    ranks = list(range(r_min, r_max + 1, cfg["step"]))
    fit(net, data, epochs, LR_ADAPT, seed, teacher=dense, params=factor_params, ranks=ranks)
    fit_probe(scorer, data, 2 * epochs, seed)
    net.eval()
    return net, scorer


def eval_budget(net: Net, scorer: ProbeScorer, data: dict, layer_target: float | None,
                rank: int | None = None) -> dict:  # fmt: skip
    """Test accuracy, ranks and per-sample energy under the ``budget`` scheduler (or, with
    ``rank``, the ``fixed`` one: the same nested model without per-sample allocation)."""
    layer = net.body
    layer.scheduler = (
        BudgetRankScheduler(layer.r_min, layer.r_max, target_mJ=layer_target)
        if rank is None
        else FixedRankScheduler(layer.r_min, layer.r_max, rank)
    )
    xte, yte = data["x"][1], data["y"][1]
    with torch.no_grad():
        logits = net(xte)
    ranks = layer.last_ranks.float()
    e_body = float(layer.last_energy_mJ.mean())
    e_total = e_body + head_mJ(data["classes"]) + scorer.flops() * EST.energy_per_flop_mJ
    return {"acc": float((logits.argmax(1) == yte).float().mean()), "energy_mJ": e_total,
            "mean_rank": float(ranks.mean()), "rank_std": float(ranks.std())}  # fmt: skip


# -- one dataset -------------------------------------------------------------------------------
def run_dataset(data: dict, cfg: dict, seeds: list[int]) -> dict:
    n, C = data["x"][0].shape[1], data["classes"]
    ranks, budgets = cfg["ranks"], cfg["budget_ranks"]
    head, scorer_e = head_mJ(C), None
    res = {"dense": [], "static": {r: [] for r in ranks}, "adaptive": {r: [] for r in budgets},
           "nested_fixed": {r: [] for r in budgets}}  # fmt: skip
    for seed in seeds:
        torch.manual_seed(seed)
        dense = Net(nn.Linear(n, HIDDEN), nn.Linear(HIDDEN, C))
        fit(dense, data, cfg["epochs"], 3e-3, seed)
        res["dense"].append(accuracy(dense, *[t[1] for t in (data["x"], data["y"])]))
        for r in ranks:
            torch.manual_seed(seed)
            net = Net(EventLinear.from_linear(dense.body, r), copy.deepcopy(dense.head))
            fit(net, data, cfg["finetune"], 3e-3, seed, teacher=dense)
            res["static"][r].append(accuracy(net, data["x"][1], data["y"][1]))
        net, scorer = build_adaptive(dense, data, cfg, seed)
        scorer_e = scorer.flops() * EST.energy_per_flop_mJ
        for r in budgets:
            target = body_mJ(n, r) - scorer_e  # total energy matched to static rank r
            res["adaptive"][r].append(eval_budget(net, scorer, data, target))
            res["nested_fixed"][r].append(eval_budget(net, scorer, data, None, rank=r)["acc"])
    rows = [{"method": "dense", "rank": n, "energy_mJ": body_mJ(n, None) + head,
             "acc": float(np.mean(res["dense"])), "acc_std": float(np.std(res["dense"]))}]  # fmt: skip
    for r in ranks:
        a = res["static"][r]
        rows.append({"method": "static", "rank": r, "energy_mJ": body_mJ(n, r) + head,
                     "acc": float(np.mean(a)), "acc_std": float(np.std(a))})  # fmt: skip
    static = {row["rank"]: row for row in rows if row["method"] == "static"}
    dominated = 0
    for r in budgets:
        pts = res["adaptive"][r]
        row = {"method": "adaptive", "rank": float(np.mean([p["mean_rank"] for p in pts])),
               "energy_mJ": float(np.mean([p["energy_mJ"] for p in pts])),
               "acc": float(np.mean([p["acc"] for p in pts])),
               "acc_std": float(np.std([p["acc"] for p in pts])),
               "rank_std_within_batch": float(np.mean([p["rank_std"] for p in pts])),
               "matched_static_rank": r,
               "nested_fixed_acc": float(np.mean(res["nested_fixed"][r]))}  # fmt: skip
        s = static[r]
        row["dominates"] = bool(row["energy_mJ"] <= s["energy_mJ"] * (1 + 1e-9)
                                and row["acc"] >= s["acc"])  # fmt: skip
        row["acc_gain_vs_static"] = row["acc"] - s["acc"]
        dominated += row["dominates"]
        rows.append(row)
    return {"dataset": data["name"], "train": len(data["y"][0]), "test": len(data["y"][1]),
            "features": n, "rows": rows, "dominated_points": dominated,
            "budget_points": len(budgets), "scorer_mJ": scorer_e, "config": cfg,
            "per_seed": {"dense": res["dense"], "static": {str(k): v for k, v in res["static"].items()},
                         "adaptive": {str(k): v for k, v in res["adaptive"].items()}}}  # fmt: skip


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2))
    for ax, res in zip(np.atleast_1d(axes), results):
        for method, style in (("static", "s-"), ("adaptive", "o-"), ("dense", "k*")):
            rows = [r for r in res["rows"] if r["method"] == method]
            e = [r["energy_mJ"] * 1e6 for r in rows]  # nJ
            ax.errorbar(e, [r["acc"] for r in rows], yerr=[r["acc_std"] for r in rows],
                        fmt=style, label=method, capsize=2, ms=5)  # fmt: skip
        ad = [r for r in res["rows"] if r["method"] == "adaptive"]
        st = {r["rank"]: r["energy_mJ"] * 1e6 for r in res["rows"] if r["method"] == "static"}
        ax.plot([st[r["matched_static_rank"]] for r in ad], [r["nested_fixed_acc"] for r in ad],
                ":", color="gray", label="adaptive model, one rank for all")  # fmt: skip
        ax.set(title=f"{res['dataset']} ({res['dominated_points']}/{res['budget_points']} "
               "budget points dominate)", xlabel="energy per sample (nJ, H100 FP32 estimate)",
               ylabel="test accuracy")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


CONFIGS = {
    "digits": {"epochs": 30, "finetune": 10, "r_min": 4, "r_max": 32, "step": 1,
               "ranks": [4, 5, 6, 7, 8, 10, 12, 16, 24, 32], "budget_ranks": [5, 6, 7, 8, 10, 12, 16]},
    "BasicMotions": {"epochs": 30, "finetune": 10, "r_min": 4, "r_max": 32, "step": 1,
                     "ranks": [4, 5, 6, 7, 8, 10, 12, 16, 24, 32], "budget_ranks": [5, 6, 7, 8, 10, 12, 16]},
}  # fmt: skip
QUICK = {"epochs": 8, "finetune": 3, "ranks": [4, 8, 16], "budget_ranks": [8, 16]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, short training (smoke test)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", default="results/energy_accuracy.json")
    ap.add_argument("--plot", default=None, help="PNG path (default: --out with .png)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = list(range(1 if args.quick else args.seeds))
    t0 = time.perf_counter()
    results = []
    for loader in (load_digits_flat, load_basicmotions_windows):
        data = loader()
        cfg = {**CONFIGS[data["name"]], **(QUICK if args.quick else {})}
        results.append(run_dataset(data, cfg, seeds))
    out = Path(args.out)
    png = Path(args.plot) if args.plot else out.with_suffix(".png")
    payload = {"benchmark": "energy_accuracy", "quick": args.quick, "seeds": seeds,
               "energy": "PerfEstimator() energy_mJ per sample (H100 SXM FP32, 10.5 pJ/FLOP)",
               "machine": machine(), "wall_s": time.perf_counter() - t0, "results": results}  # fmt: skip
    write_json(out, payload)
    plot(results, png)
    for res in results:
        print(f"\n{res['dataset']}: {res['dominated_points']}/{res['budget_points']} adaptive "
              f"budget points dominate static low rank (train {res['train']}, test {res['test']})")  # fmt: skip
        rows = [{**r, "nJ": r["energy_mJ"] * 1e6, "dom": r.get("dominates", ""),
                 "fixed": r.get("nested_fixed_acc", "")} for r in res["rows"]]  # fmt: skip
        print(table(rows, ["method", "rank", "nJ", "acc", "acc_std", "dom", "fixed"],
                    {"rank": "{:.1f}", "nJ": "{:.1f}", "acc": "{:.4f}", "acc_std": "{:.4f}",
                     "fixed": "{:.4}"}))  # fmt: skip
    print(
        "\nfixed: the adaptive model with the matched static rank for every sample (no allocation)"
    )
    print(f"\nwall {payload['wall_s']:.1f} s; JSON {out}; plot {png}")
    return payload


if __name__ == "__main__":
    main()
