"""Trainer, config schema, regularisers, plots and the experiments runner."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from braingate.experiments import DynamicMLP
from braingate.train import (
    ADLRNSTrainer,
    ExperimentConfig,
    Trainer,
    energy_penalty,
    event_rate,
    plot_history,
)

CFG = {"model": {"r_min": 2, "r_max": 8}, "train": {"lr": "1e-2", "epochs": 2, "progress": False},
       "scheduler": {"type": "complexity"}, "hardware": {"energy_per_flop": 1e-6}}  # fmt: skip


def _loaders(rng):
    x = torch.from_numpy(rng.normal(size=(64, 12))).float()
    y = (x[:, 0] > 0).long()
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=16, shuffle=False), DataLoader(ds, batch_size=32)


def test_train_history_checkpoint_resume(rng, tmp_path):
    model = DynamicMLP(12, 16, 2, 2, 8, 8, 4)
    tr, va = _loaders(rng)
    trainer = ADLRNSTrainer(model, CFG, "cpu", save_dir=tmp_path)
    hist = trainer.train(tr, va, num_epochs=2)
    assert hist["epoch"] == [0, 1] and hist["energy_mJ"][0] > 0
    assert hist["train_loss"][1] < hist["train_loss"][0]
    assert json.loads((tmp_path / "history.json").read_text())["epoch"] == [0, 1]
    assert (tmp_path / "history.csv").read_text().splitlines()[0].startswith("epoch,")
    again = Trainer(DynamicMLP(12, 16, 2, 2, 8, 8, 4), CFG, "cpu", save_dir=tmp_path, resume=True)
    assert again.start_epoch == 2
    hist2 = again.train(tr, va, num_epochs=3)
    assert hist2["epoch"] == [0, 1, 2]
    png = plot_history(hist2, tmp_path / "h.png")
    assert png.stat().st_size > 1000


def test_energy_penalty_values_and_gradient():
    r = torch.tensor([4.0, 8.0], requires_grad=True)
    p = energy_penalty(r, (16, 8), alpha=1.0, beta=0.0)
    expected = ((2 * 4 * 24 + 4 + 8) + (2 * 8 * 24 + 8 + 8)) / 2 / (2 * 16 * 8 + 8)
    assert float(p.detach()) == pytest.approx(expected)
    p.backward()
    assert (r.grad > 0).all()


def test_event_rate_counts_changes():
    xs = torch.zeros(5, 2, 3)
    assert float(event_rate(xs, threshold=0.1, temperature=0.01)) < 1e-3
    xs[2:] = 1.0
    assert float(event_rate(xs, threshold=0.1, temperature=0.01)) == pytest.approx(0.2, abs=1e-3)


@pytest.mark.parametrize(
    "cfg,match",
    [({"model": {"r_min": 9, "r_max": 4}}, "r_min=9 > model.r_max=4"), ({"scheduler": {"type": "x"}}, "known"),
     ({"train": {"lr": "fast"}}, "train.lr"), ({"scheduler": {"energy_budget_mJ_per_sample": -1}}, "must be >= 0"),
     ({"optim": {}}, "unknown config sections")],
)  # fmt: skip
def test_config_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        ExperimentConfig.from_dict(cfg)


def test_shipped_config_parses():
    from pathlib import Path

    import braingate.experiments as ex

    cfg = ExperimentConfig.load(Path(ex.__file__).parent / "configs" / "digits_dynamic.yaml")
    assert cfg.train.lr == pytest.approx(3e-3) and cfg.scheduler.type == "energy_aware"
