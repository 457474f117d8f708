"""Constructor and config values: NaN, negative and out-of-range ones are refused with the
argument, the value and the fix (LIF, the Trainer's config sections, the Trainer itself)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from braingate.nn.lif import LIF
from braingate.train import ExperimentConfig, Trainer

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({"beta": NAN}, ValueError, r"beta=nan must lie in \[0, 1\]; pass e.g. beta=0.9"),
        ({"beta": 1.5}, ValueError, r"beta=1.5 must lie in \[0, 1\]"),
        ({"beta": -0.1}, ValueError, r"beta=-0.1 must lie in \[0, 1\]"),
        ({"beta": torch.tensor([0.5, NAN, 0.2])}, ValueError, r"beta=\[nan\] \(offending"),
        ({"beta": torch.ones(2)}, ValueError, r"beta has shape \(2,\); pass a scalar or .*\(3,\)"),
        ({"beta": "0.9"}, TypeError, r"beta='0.9' must be a number"),
        ({"beta": True}, TypeError, r"beta=True must be a number"),
        ({"threshold": NAN}, ValueError, r"threshold=nan must be finite and > 0"),
        ({"threshold": -1.0}, ValueError, r"threshold=-1.0 must be finite and > 0; pass e.g."),
        ({"threshold": 0.0}, ValueError, r"threshold=0.0 must be finite and > 0"),
        ({"threshold": INF}, ValueError, r"threshold=inf must be finite"),
        ({"threshold": np.array([1.0, -2.0, 1.0])}, ValueError, r"threshold=\[-2.0\]"),
        ({"reset": "hard"}, ValueError, r"reset='hard' is unknown; pass 'subtract' or 'zero'"),
        ({"reset": None}, ValueError, r"reset=None is unknown"),
    ],
)
def test_lif_rejects_bad_values(kw, error, match):
    with pytest.raises(error, match=match):
        LIF(3, **kw)


@pytest.mark.parametrize(
    ("size", "error", "match"),
    [(0, ValueError, "size=0 must be positive"), (-4, ValueError, "size=-4 must be positive"),
     (2.5, TypeError, "size must be an int, got float"), (True, TypeError, "got bool")],
)  # fmt: skip
def test_lif_rejects_bad_size(size, error, match):
    with pytest.raises(error, match=match):
        LIF(size)


def test_lif_reassignment_is_checked_and_leaves_the_old_value():
    lif = LIF(3, beta=0.8, threshold=0.5)
    with pytest.raises(ValueError, match="beta=nan"):
        lif.beta = NAN
    with pytest.raises(ValueError, match="threshold=-0.5"):
        lif.threshold = -0.5
    assert torch.equal(lif.beta, torch.full((3,), 0.8))
    assert torch.equal(lif.threshold, torch.full((3,), 0.5))


def test_lif_accepts_the_edges_and_numpy_values():
    assert torch.equal(LIF(2, beta=0.0).beta, torch.zeros(2))
    assert torch.equal(LIF(2, beta=1).beta, torch.ones(2))
    assert torch.equal(LIF(2, beta=np.float32(0.5)).beta, torch.full((2,), 0.5))
    assert torch.allclose(
        LIF(2, threshold=np.array([0.5, 2.0])).threshold, torch.tensor([0.5, 2.0])
    )


# --- the Trainer's config -------------------------------------------------------------------

CONFIG_CASES = {
    "lr-nan": ({"train": {"lr": NAN}}, r"train.lr=nan is not finite; write e.g. lr: 0.001"),
    "lr-inf": ({"train": {"lr": "inf"}}, r"train.lr='inf' is not finite"),
    "lr-zero": ({"train": {"lr": 0}}, r"train.lr=0 must be > 0"),
    "lr-negative": ({"train": {"lr": -1e-3}}, r"train.lr=-0.001 must be > 0"),
    "lr-word": ({"train": {"lr": "fast"}}, r"train.lr='fast' is not a number"),
    "epochs-negative": ({"train": {"epochs": -1}}, r"train.epochs=-1 must be >= 0; write e.g."),
    "epochs-fraction": ({"train": {"epochs": 2.5}}, r"train.epochs=2.5 must be a whole number"),
    "batch-zero": ({"train": {"batch_size": 0}}, r"train.batch_size=0 must be >= 1"),
    "batch-bool": ({"train": {"batch_size": True}}, r"train.batch_size=True is a boolean"),
    "seed-negative": ({"train": {"seed": -3}}, r"train.seed=-3 must be >= 0"),
    "seed-huge": ({"train": {"seed": 2**40}}, r"train.seed=\d+ must be < 2\*\*32"),
    "penalty-nan": ({"train": {"energy_penalty_weight": NAN}}, r"energy_penalty_weight=nan"),
    "clip-negative": ({"train": {"grad_clip": -1}}, r"train.grad_clip=-1 must be >= 0"),
    "decay-inf": ({"train": {"weight_decay": INF}}, r"train.weight_decay=inf is not finite"),
    "progress": ({"train": {"progress": "no"}}, r"train.progress='no' must be true or false"),
    "rmin-zero": ({"model": {"r_min": 0}}, r"model.r_min=0 must be >= 1"),
    "hidden-nan": ({"model": {"hidden": NAN}}, r"model.hidden=nan is not finite"),
    "rank-order": ({"model": {"r_min": 9, "r_max": 4}}, r"r_min=9 > model.r_max=4"),
    "budget-nan": (
        {"scheduler": {"energy_budget_mJ_per_sample": NAN}},
        r"scheduler.energy_budget_mJ_per_sample=nan is not finite",
    ),
    "budget-negative": (
        {"scheduler": {"energy_budget_mJ_per_sample": -1}},
        r"energy_budget_mJ_per_sample=-1 must be >= 0",
    ),
    "alpha-nan": ({"scheduler": {"alpha": NAN}}, r"scheduler.alpha=nan is not finite"),
    "beta-negative": ({"scheduler": {"beta": -0.1}}, r"scheduler.beta=-0.1 must be >= 0"),
    "scheduler-type": ({"scheduler": {"type": "x"}}, r"unknown scheduler.type 'x'; known: "),
    "hw-nan": ({"hardware": {"energy_per_flop": NAN}}, r"hardware.energy_per_flop=nan"),
    "hw-zero-bandwidth": (
        {"hardware": {"memory_bandwidth": 0}},
        r"hardware.memory_bandwidth=0 must be > 0",
    ),
    "hw-negative": ({"hardware": {"energy_per_byte": -1}}, r"hardware.energy_per_byte=-1"),
    "val-fraction-one": ({"data": {"val_fraction": 1.0}}, r"data.val_fraction=1.0 must be in"),
    "val-fraction-nan": ({"data": {"val_fraction": NAN}}, r"data.val_fraction=nan"),
    "section": ({"optim": {}}, r"unknown config sections \['optim'\]"),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_config_rejects_bad_values(case):
    cfg, match = CONFIG_CASES[case]
    with pytest.raises(ValueError, match=match):
        ExperimentConfig.from_dict(cfg)


def test_config_accepts_yaml_strings_and_whole_floats():
    cfg = ExperimentConfig.from_dict(
        {"train": {"lr": "1e-4", "epochs": 3.0, "batch_size": "32"},
         "hardware": {"energy_per_flop": "1e-9", "memory_bandwidth": 2e12, "name": "mine"}}
    )  # fmt: skip
    assert cfg.train.lr == 1e-4 and cfg.train.epochs == 3 and cfg.train.batch_size == 32
    assert isinstance(cfg.train.epochs, int)
    prof = cfg.hardware.profile()
    assert prof == {"energy_per_flop": 1e-9, "memory_bandwidth": 2e12, "name": "mine"}
    assert math.isfinite(cfg.train.lr)


def test_trainer_rejects_bad_arguments(tmp_path):
    model = torch.nn.Linear(4, 2)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        Trainer("model", {}, save_dir=tmp_path)
    with pytest.raises(TypeError, match="resume='yes' must be True or False"):
        Trainer(model, {}, save_dir=tmp_path, resume="yes")
    with pytest.raises(TypeError, match="save_dir=3 must be a path"):
        Trainer(model, {}, save_dir=3)
    trainer = Trainer(model, {"train": {"progress": False}}, save_dir=tmp_path)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match=rf"num_epochs={bad!r} must be an int >= 0"):
            trainer.train([], None, num_epochs=bad)
