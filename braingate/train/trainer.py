"""``Trainer``: task loss + energy penalty, checkpoints and resume, history as JSON/CSV."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from braingate.energy.estimator import PerfEstimator
from braingate.scheduling.base import RankScheduler
from braingate.train.config import ExperimentConfig
from braingate.train.regularizers import model_energy_penalty

__all__ = ["ADLRNSTrainer", "Trainer"]

HISTORY_KEYS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "energy_mJ",
    "avg_rank",
    "penalty",
    "time_s",
)


def _dynamic_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "last_soft_rank") and hasattr(m, "plan")]


class Trainer:
    """Train a model with dynamic low-rank layers on the ADLRNS objective.

    .. math::
        \\min \\frac1N \\sum_i \\mathcal L(f(x_i), y_i) + \\lambda\\,\\mathcal E, \\quad
        \\mathcal E = \\alpha \\tfrac{\\mathrm{FLOPs}(r)}{\\mathrm{FLOPs}_{full}} + \\beta \\tfrac{\\mathrm{Mem}(r)}{\\mathrm{Mem}_{full}}

    The config (dict in the ADLRNS YAML schema, or :class:`ExperimentConfig`) sets the
    optimiser (``train``), the scheduler of every dynamic layer (``scheduler``: type, alpha,
    beta, ``energy_budget_mJ_per_sample`` as the layers' default budget) and their estimator
    (``hardware``, when given).

    Args:
        model: outputs logits (or a tuple whose first item is the logits).
        config: dict or ExperimentConfig.
        device: torch device (default CPU).
        save_dir: where ``last.pt``, ``best.pt``, ``history.json`` and ``history.csv`` go.
        resume: continue from ``save_dir/last.pt`` when it exists.
    """

    def __init__(self, model: nn.Module, config: Any = None, device: Any = None,
                 save_dir: str | Path = "./checkpoints", resume: bool = False) -> None:  # fmt: skip
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.config = (
            config if isinstance(config, ExperimentConfig) else ExperimentConfig.from_dict(config)
        )
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.model = model.to(self.device)
        self.save_dir = Path(save_dir)
        tc = self.config.train
        torch.manual_seed(tc.seed)
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay
        )
        self._configure_layers()
        self.history: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
        self.start_epoch = 0
        self.best_val = -float("inf")
        if resume and (self.save_dir / "last.pt").exists():
            self.load_checkpoint(self.save_dir / "last.pt")

    def _configure_layers(self) -> None:
        sc, hw = self.config.scheduler, self.config.hardware.profile()
        for layer in _dynamic_layers(self.model):
            kw = {"r_min": layer.r_min, "r_max": layer.r_max, "alpha": sc.alpha, "beta": sc.beta}
            if sc.type in ("fixed", "complexity"):
                kw.pop("alpha"), kw.pop("beta")
            if sc.type == "budget":
                if sc.energy_budget_mJ_per_sample is None:
                    raise ValueError(
                        "scheduler.type 'budget' needs scheduler.energy_budget_mJ_per_sample"
                    )
                kw["target_mJ"] = sc.energy_budget_mJ_per_sample
            layer.scheduler = RankScheduler(sc.type, **kw)
            if sc.type != "budget":
                layer.budget = sc.energy_budget_mJ_per_sample
            if hw:
                layer.estimator = PerfEstimator(hw)

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, path: str | Path, epoch: int) -> None:
        """Model, optimizer, epoch, best score and history."""
        self.save_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "epoch": epoch, "best_val": self.best_val, "history": self.history,
                    "config": self.config.to_dict()}, path)  # fmt: skip

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore what :meth:`save_checkpoint` wrote; training resumes at the next epoch."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch, self.best_val, self.history = (
            state["epoch"] + 1,
            state["best_val"],
            state["history"],
        )

    def _write_history(self) -> None:
        self.save_dir.mkdir(parents=True, exist_ok=True)
        (self.save_dir / "history.json").write_text(json.dumps(self.history, indent=1))
        with open(self.save_dir / "history.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(HISTORY_KEYS)
            w.writerows(zip(*(self.history[k] for k in HISTORY_KEYS)))

    # -- loops ----------------------------------------------------------------------------------
    def _batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        x, y = batch[0], batch[1]
        return x.to(self.device), y.to(self.device)

    def _forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) else out

    def _layer_stats(self) -> tuple[float, float]:
        layers = [m for m in _dynamic_layers(self.model) if m.last_ranks is not None]
        energy = sum(float(m.last_energy_mJ.mean()) for m in layers)
        rank = sum(float(m.last_ranks.float().mean()) for m in layers) / max(len(layers), 1)
        return energy, rank

    def run_epoch(self, loader: Any, train: bool) -> dict[str, float]:
        """One pass; returns mean loss, accuracy, penalty, energy (mJ/sample) and rank."""
        tc = self.config.train
        self.model.train(train)
        tot = {"loss": 0.0, "correct": 0.0, "n": 0, "penalty": 0.0, "energy": 0.0, "rank": 0.0}
        bar = loader
        if train and tc.progress:
            from tqdm.auto import tqdm

            bar = tqdm(loader, desc="train", leave=False)
        with torch.set_grad_enabled(train):
            for batch in bar:
                x, y = self._batch(batch)
                logits = self._forward(x)
                loss = nn.functional.cross_entropy(logits, y)
                penalty = model_energy_penalty(self.model, tc.penalty_alpha, tc.penalty_beta)
                if train:
                    self.optimizer.zero_grad()
                    (loss + tc.energy_penalty_weight * penalty).backward()
                    if tc.grad_clip > 0:
                        nn.utils.clip_grad_norm_(self.model.parameters(), tc.grad_clip)
                    self.optimizer.step()
                b = len(y)
                energy, rank = self._layer_stats()
                tot["n"] += b
                tot["loss"] += float(loss.detach()) * b
                tot["correct"] += float((logits.argmax(-1) == y).sum())
                tot["penalty"] += float(penalty.detach()) * b
                tot["energy"] += energy * b
                tot["rank"] += rank * b
        n = max(tot["n"], 1)
        return {"loss": tot["loss"] / n, "acc": tot["correct"] / n, "penalty": tot["penalty"] / n,
                "energy": tot["energy"] / n, "rank": tot["rank"] / n}  # fmt: skip

    def train(
        self, train_loader: Any, val_loader: Any = None, num_epochs: int | None = None
    ) -> dict[str, list[float]]:
        """Train for ``num_epochs`` (default ``train.epochs``) from ``start_epoch``; returns the history."""
        epochs = self.config.train.epochs if num_epochs is None else num_epochs
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"num_epochs={num_epochs!r} must be an int >= 0")
        for epoch in range(self.start_epoch, epochs):
            t0 = time.perf_counter()
            tr = self.run_epoch(train_loader, train=True)
            va = self.run_epoch(val_loader, train=False) if val_loader is not None else tr
            row = {"epoch": epoch, "train_loss": tr["loss"], "train_acc": tr["acc"], "val_loss": va["loss"],
                   "val_acc": va["acc"], "energy_mJ": va["energy"], "avg_rank": va["rank"],
                   "penalty": tr["penalty"], "time_s": time.perf_counter() - t0}  # fmt: skip
            for k in HISTORY_KEYS:
                self.history[k].append(row[k])
            if va["acc"] > self.best_val:
                self.best_val = va["acc"]
                self.save_checkpoint(self.save_dir / "best.pt", epoch)
            self.save_checkpoint(self.save_dir / "last.pt", epoch)
            self._write_history()
        self.start_epoch = max(self.start_epoch, epochs)
        return self.history


ADLRNSTrainer = Trainer
