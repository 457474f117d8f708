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


# -- rank floors calibrated from measured accuracy ------------------------------------------------
def _digits(n: int = 600):
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data[:n] / 16.0, dtype=torch.float32)
    return x, torch.as_tensor(d.target[:n])


def _calibrated(tmp_path, **train):
    x, y = _digits()
    torch.manual_seed(0)
    model = DynamicMLP(64, 32, 10, 2, 32, 8, 8)
    cfg = {"model": {"r_min": 2, "r_max": 32},
           "train": {"lr": 1e-2, "epochs": 4, "progress": False, **train},
           "scheduler": {"type": "energy_aware"}}  # fmt: skip
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    trainer = Trainer(model, cfg, "cpu", save_dir=tmp_path)
    trainer.train(loader, None)
    return trainer, model, x, y


def _acc_at(model, x, y, rank=None, floor=None):
    """Accuracy with every sample at ``rank``, or with the scheduler planning above ``floor``."""
    kept = model.dyn.rank_floor
    model.dyn.force_rank, model.dyn.rank_floor = rank, floor
    try:
        with torch.no_grad():
            return float((model.eval()(x).argmax(1) == y).float().mean())
    finally:
        model.dyn.force_rank, model.dyn.rank_floor = None, kept


def test_rank_floor_is_the_lowest_rank_within_the_tolerance(tmp_path):
    """On digits a 64->32 layer loses accuracy at the energy-aware scheduler's low ranks: the
    floor is the lowest block end whose accuracy on the calibration samples (the scheduler
    planning above it) is within rank_tolerance of r_max."""
    trainer, model, x, y = _calibrated(tmp_path, rank_tolerance=1.0, calibration_samples=256)
    lay = model.dyn
    floor = lay.rank_floor
    assert floor is not None and floor > lay.r_min
    ends = lay.ends.tolist()
    # the samples it measured: the last epoch's first 256, in the loader's shuffled order
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        order = torch.randperm(len(x), generator=gen)
    xc, yc = x[order[:256]], y[order[:256]]
    ref = _acc_at(model, xc, yc, lay.r_max)
    assert _acc_at(model, xc, yc, floor=floor) >= ref - 0.01
    below = ends[ends.index(floor) - 1]
    assert _acc_at(model, xc, yc, floor=below) < ref - 0.01
    with torch.no_grad():
        _, ranks = model.dyn(x)
    assert (ranks >= floor).all()
    assert trainer.calibrate_rank_floors(xc, yc) == {"dyn": floor}  # the same measurement


def test_rank_floor_tolerance_and_switch(tmp_path):
    _, model, _, _ = _calibrated(tmp_path / "a", rank_tolerance=100.0)
    assert model.dyn.rank_floor is None  # the scheduler's plan is within 100 points: no floor
    _, model, _, _ = _calibrated(tmp_path / "b", calibrate_ranks=False)
    assert model.dyn.rank_floor is None


@pytest.mark.parametrize(
    ("train", "match"),
    [({"rank_tolerance": -1}, "train.rank_tolerance=-1 must be >= 0"),
     ({"calibration_samples": 0}, "train.calibration_samples=0 must be >= 1"),
     ({"calibrate_ranks": "yes"}, "train.calibrate_ranks='yes' must be true or false")],
)  # fmt: skip
def test_rank_floor_config_errors(train, match):
    with pytest.raises(ValueError, match=match):
        ExperimentConfig.from_dict({"train": train})


def test_rank_floor_calibration_leaves_budget_managers_alone(tmp_path):
    """The closed-loop 'budget' scheduler's manager does not count the calibration passes."""
    from braingate.scheduling import BudgetManager, BudgetRankScheduler

    trainer, model, x, y = _calibrated(tmp_path, rank_tolerance=0.0)
    lay = model.dyn
    manager = BudgetManager(total_budget=float(lay.energy_table(64)[0]), safety_margin=0.0)
    sched = BudgetRankScheduler(lay.r_min, lay.r_max, manager=manager, layer_id="dyn")
    lay.scheduler = sched
    with torch.no_grad():
        model.eval()(x[:64])
    history, layers = list(manager.history), repr(manager._layers)
    with torch.no_grad():
        model(x[:64])  # a pass that spends: the manager counts it
    assert len(manager.history) > len(history)
    history, layers = list(manager.history), repr(manager._layers)
    floors = trainer.calibrate_rank_floors(x[:256], y[:256])
    assert floors["dyn"] is not None  # it ran the scheduler at several floors
    assert lay.scheduler is sched and sched.manager is manager
    assert list(manager.history) == history and repr(manager._layers) == layers
