"""``python -m braingate.experiments run CONFIG.yaml``: data + model + Trainer + plots."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from braingate.nn.dynamic import DynamicLowRankLayer
from braingate.train import ExperimentConfig, Trainer, plot_history

__all__ = ["DynamicMLP", "load_data", "main", "run"]


class DynamicMLP(nn.Module):
    """``DynamicLowRankLayer(n → hidden) → ReLU → Linear(hidden → classes)``; returns logits."""

    def __init__(
        self,
        n: int,
        hidden: int,
        classes: int,
        r_min: int,
        r_max: int,
        scorer_hidden: int,
        blocks: int,
    ):
        super().__init__()
        self.dyn = DynamicLowRankLayer(n, hidden, r_max, r_min, scorer_hidden, blocks)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.dyn(x.flatten(1))[0]))


def load_data(name: str, seed: int = 0, val_fraction: float = 0.25):
    """Real data only: ``digits`` (sklearn), ``basicmotions`` / ``gunpoint`` (aeon, flattened)."""
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X = X / 16.0
    elif name in ("basicmotions", "gunpoint"):
        from aeon.datasets import load_classification

        X, y = load_classification({"basicmotions": "BasicMotions", "gunpoint": "GunPoint"}[name])
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        X = (X - X.mean(0)) / (X.std(0) + 1e-8)
        y = np.unique(y, return_inverse=True)[1]
    else:
        raise ValueError(f"unknown data.name {name!r}; known: basicmotions, digits, gunpoint")
    idx = np.random.default_rng(seed).permutation(len(X))
    cut = int(len(X) * (1 - val_fraction))
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    tr, va = idx[:cut], idx[cut:]
    return (t(X[tr]), torch.tensor(y[tr]).long()), (t(X[va]), torch.tensor(y[va]).long())


def run(config_path: str, save_dir: str = "results/experiment", epochs: int | None = None) -> dict:
    """Train the config's model on its data; write checkpoints, history and the four-panel PNG."""
    cfg = ExperimentConfig.load(config_path)
    if cfg.model.type != "dynamic_mlp":
        raise ValueError(f"unknown model.type {cfg.model.type!r}; known: dynamic_mlp")
    (xt, yt), (xv, yv) = load_data(cfg.data.name, cfg.train.seed, cfg.data.val_fraction)
    torch.manual_seed(cfg.train.seed)
    m = cfg.model
    model = DynamicMLP(
        xt.shape[1],
        m.hidden,
        int(yt.max()) + 1,
        m.r_min,
        m.r_max,
        m.scorer_hidden,
        m.num_gate_blocks,
    )
    bs = cfg.train.batch_size
    train = DataLoader(TensorDataset(xt, yt), batch_size=bs, shuffle=True)
    val = DataLoader(TensorDataset(xv, yv), batch_size=bs)
    trainer = Trainer(model, cfg, device="cpu", save_dir=save_dir, resume=True)
    hist = trainer.train(train, val, num_epochs=epochs)
    plot_history(hist, Path(save_dir) / "history.png")
    summary = {k: v[-1] for k, v in hist.items() if v}
    (Path(save_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
    return hist


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m braingate.experiments")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train from a YAML config")
    r.add_argument("config")
    r.add_argument("--save-dir", default="results/experiment")
    r.add_argument("--epochs", type=int, default=None)
    args = ap.parse_args(argv)
    hist = run(args.config, args.save_dir, args.epochs)
    print(f"{'epoch':>5} {'val_acc':>8} {'energy_mJ':>11} {'avg_rank':>8}")
    for e, a, en, rk in zip(hist["epoch"], hist["val_acc"], hist["energy_mJ"], hist["avg_rank"]):
        print(f"{e:5d} {a:8.3f} {en:11.3e} {rk:8.1f}")
