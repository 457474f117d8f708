"""End-to-end training of event networks (braingate.train.end_to_end) and its benchmark."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import braingate as bg
from braingate.train.end_to_end import (
    EventRecipe,
    _annealed,
    _Run,
    evaluate_events,
    readout_logits,
    train_events,
)

ROOT = Path(__file__).resolve().parents[2]


def _task(T: int = 12, B: int = 48, F: int = 4, seed: int = 0):
    """Smooth streams whose class is the sign of the mean of feature 0 (synthetic: unit tests
    only)."""
    g = torch.Generator().manual_seed(seed)
    xs = (0.3 * torch.randn(T, B, F, generator=g)).cumsum(0) / math.sqrt(T)
    xs[..., 0] += torch.randn(B, generator=g)
    ys = (xs[..., 0].mean(0) > 0).long()
    return xs, ys


def _net(F: int = 4, H: int = 16, C: int = 2, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(bg.EventLinear(F, H, 4), nn.ReLU(), bg.EventLinear(H, C, 2))


def _raw(model: nn.Module) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.endswith("_raw")]


def test_dense_phase_learns_then_events_save_synops():
    xs, ys = _task()
    net = _net()
    train_events(net, xs, ys, epochs=0, budget=0.1, seed=0,
                 recipe=EventRecipe(dense_epochs=60, batch_size=16, lr=1e-2))  # fmt: skip
    exact = evaluate_events(net, xs, ys)  # thresholds still 0: the event path is exact
    assert exact["accuracy"] >= 0.9
    hist = train_events(net, xs, ys, epochs=6, budget=0.05, seed=0,
                        recipe=EventRecipe(batch_size=16, threshold_lr=0.2, penalty=4.0,
                                           threshold_init=0.2))  # fmt: skip
    after = evaluate_events(net, xs, ys)
    assert after["ratio"] > 1.5 * exact["ratio"]  # the penalty and thresholds cut synops
    assert after["accuracy"] >= exact["accuracy"] - 0.1
    assert [h["phase"] for h in hist] == ["events"] * 6
    assert hist[-1]["activity"] < hist[0]["activity"]
    assert all(h["budget"] >= 0.05 - 1e-12 for h in hist) and hist[-1]["budget"] == 0.05


def test_thresholds_end_fixed_and_train_flag_restored():
    xs, ys = _task()
    net = _net().eval()
    train_events(net, xs, ys, epochs=1, budget=0.2, recipe=EventRecipe(dense_epochs=1), seed=0)
    assert not _raw(net) and not net.training
    for layer in (net[0], net[2]):
        th = torch.as_tensor(layer.threshold)
        assert th.shape == (layer.in_features,) and bool((th > 0).all())
        assert torch.as_tensor(layer.latent_threshold).shape == (layer.rank,)
    ys_out, _ = bg.simulate(net, xs, mode="event")  # runs on the fixed thresholds
    assert ys_out.shape == (xs.shape[0], xs.shape[1], 2)


def test_threshold_init_is_the_rms_change_per_unit():
    xs, ys = _task()
    net = _net()
    # threshold_lr=0, lr tiny, no penalty: the thresholds stay at their initial values
    recipe = EventRecipe(threshold_init=0.5, threshold_lr=0.0, penalty=0.0, lr=1e-9,
                         event_lr=1e-12, batch_size=48)  # fmt: skip
    train_events(net, xs, ys, epochs=1, budget=0.5, recipe=recipe)
    want = 0.5 * xs.diff(dim=0).reshape(-1, 4).pow(2).mean(0).sqrt()
    assert torch.allclose(torch.as_tensor(net[0].threshold), want, rtol=1e-3)
    z = xs.diff(dim=0).reshape(-1, 4) @ net[0].V.detach()
    assert torch.allclose(torch.as_tensor(net[0].latent_threshold),
                          0.5 * z.pow(2).mean(0).sqrt(), rtol=1e-2)  # fmt: skip


def test_threshold_init_none_keeps_the_models_thresholds():
    xs, ys = _task()
    dense = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    net = bg.convert(dense, rank={"0": 4, "2": 2})  # from a converted model
    for layer in (net[0], net[2]):
        layer.threshold, layer.latent_threshold = 0.07, 0.03
    recipe = EventRecipe(threshold_init=None, threshold_lr=0.0, penalty=0.0)
    train_events(net, xs, ys, epochs=1, budget=0.5, recipe=recipe, seed=0)
    for layer in (net[0], net[2]):
        assert torch.allclose(torch.as_tensor(layer.threshold), torch.tensor(0.07))
        assert torch.allclose(torch.as_tensor(layer.latent_threshold), torch.tensor(0.03))


def test_validation_history_matches_the_final_event_run():
    xs, ys = _task()
    xv, yv = _task(seed=1)
    net = _net()
    hist = train_events(net, xs, ys, epochs=2, budget=0.1, validation=(xv, yv), seed=0,
                        recipe=EventRecipe(dense_epochs=3, batch_size=16))  # fmt: skip
    assert "val_accuracy" not in hist[0] and {"val_accuracy", "val_ratio"} <= set(hist[-1])
    final = evaluate_events(net, xv, yv)
    assert hist[-1]["val_accuracy"] == pytest.approx(final["accuracy"])
    assert hist[-1]["val_ratio"] == pytest.approx(final["ratio"], rel=1e-6)


def test_seeded_runs_repeat_exactly():
    xs, ys = _task()
    runs = []
    for _ in range(2):
        net = _net(seed=3)
        hist = train_events(net, xs, ys, epochs=1, budget=0.1, seed=5,
                            recipe=EventRecipe(dense_epochs=2, batch_size=16,
                                               input_dropout=0.2))  # fmt: skip
        runs.append((hist, net.state_dict()))
    assert runs[0][0] == runs[1][0]
    for k, v in runs[0][1].items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, runs[1][1][k]), k


def test_input_dropout_mask_is_constant_over_time():
    xs = torch.randn(6, 32, 5).abs() + 0.1  # no zeros before dropout
    ys = torch.zeros(32, dtype=torch.long)
    run = _Run(_net(F=5), xs, ys, EventRecipe(input_dropout=0.5, batch_size=32), seed=0)
    ((x, _),) = list(run.batches())
    dropped = x == 0
    assert bool((dropped == dropped[:1]).all())  # one mask per stream and feature
    assert 0.2 < float(dropped[0].float().mean()) < 0.8
    kept = ~dropped
    order = torch.randperm(32, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x[kept], (xs[:, order] * 2.0)[kept])  # inverted-dropout scale
    ((x2, _),) = list(run.batches(dropout=False))  # the event phase: no dropout
    assert not bool((x2 == 0).any())


def test_budget_annealing_schedule():
    assert _annealed(0.4, 0.1, 0, 10, 0.5) == pytest.approx(0.4)
    assert _annealed(0.4, 0.1, 5, 10, 0.5) == pytest.approx(0.1)
    assert _annealed(0.4, 0.1, 9, 10, 0.5) == pytest.approx(0.1)
    assert _annealed(0.4, 0.1, 2, 8, 0.5) == pytest.approx(0.2)  # geometric midpoint
    assert _annealed(0.4, 0.0, 2, 8, 0.5) == pytest.approx(0.2)  # linear towards 0
    assert _annealed(0.05, 0.1, 0, 8, 0.5) == 0.1  # already under the budget
    assert _annealed(0.4, 0.1, 0, 8, 0.0) == 0.1  # no annealing


def test_dense_model_trains_by_the_dense_phase_alone():
    xs, ys = _task()
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    hist = train_events(mlp, xs, ys, epochs=0, budget=0.1, seed=0,
                        recipe=EventRecipe(dense_epochs=40, batch_size=16, lr=1e-2))  # fmt: skip
    assert len(hist) == 40 and hist[-1]["ce"] < hist[0]["ce"]
    with torch.no_grad():
        acc = float((readout_logits(mlp(xs), "mean").argmax(-1) == ys).float().mean())
    assert acc >= 0.9
    with pytest.raises(ValueError, match="no event layers"):
        train_events(mlp, xs, ys, epochs=1, budget=0.1)


def test_last_and_callable_readouts():
    out = torch.arange(24.0).reshape(3, 4, 2)
    assert torch.equal(readout_logits(out, "last"), out[-1])
    assert torch.equal(readout_logits(out, "mean"), out.mean(0))
    assert torch.equal(readout_logits(out, lambda o: o.amax(0)), out.amax(0))
    xs, ys = _task()
    hist = train_events(_net(), xs, ys, epochs=1, budget=0.2, readout="last", seed=0)
    assert math.isfinite(hist[0]["loss"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"budget": 1.0}, r"budget=1\.0 must be finite and in \[0\.0, 1\.0\)"),
        ({"budget": -0.1}, "budget=-0.1"),
        ({"readout": "max"}, "readout='max' is unknown"),
        ({"epochs": -1}, "epochs=-1 must be >= 0"),
        ({"epochs": 0}, "nothing to train"),
        ({"xs": torch.randn(12, 48)}, r"xs must be a float time-first stream \(T, B, features\)"),
        ({"xs": torch.full((12, 48, 4), float("nan"))}, "NaN or inf"),
        ({"ys": torch.zeros(47, dtype=torch.long)}, "47 labels for 48 streams"),
        ({"ys": torch.zeros(48)}, "integer class labels"),
        ({"ys": -torch.ones(48, dtype=torch.long)}, "negative labels"),
        ({"validation": (torch.randn(3, 5, 4),)}, r"validation must be a tuple \(xs, ys\)"),
        ({"seed": -2}, "seed=-2 must be >= 0"),
    ],
)
def test_bad_arguments_leave_the_model_untouched(kwargs, match):
    xs, ys = _task()
    net = _net()
    before = copy.deepcopy(net.state_dict())
    args = {"xs": xs, "ys": ys, "epochs": 1, "budget": 0.1, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        train_events(net, args.pop("xs"), args.pop("ys"), **args)
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(v, after[k]) for k, v in before.items() if isinstance(v, torch.Tensor))
    assert not _raw(net)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("lr", 0.0, r"lr=0\.0 must be finite and in \(0\.0"),
        ("event_lr", -1e-3, "event_lr=-0.001"),
        ("batch_size", 0, "batch_size=0 must be >= 1"),
        ("dense_epochs", 1.5, "dense_epochs must be an int"),
        ("input_dropout", 1.0, r"input_dropout=1\.0 must be finite and in \[0\.0, 1\.0\)"),
        ("schedule", "step", "schedule='step' is unknown"),
        ("budget_start", 1.0, "budget_start=1.0"),
        ("threshold_init", -0.1, "threshold_init=-0.1"),
        ("grad_clip", 0.0, "grad_clip=0.0"),
        ("penalty", float("inf"), "penalty=inf must be finite"),
    ],
)
def test_recipe_validation(field, value, match):
    with pytest.raises((ValueError, TypeError), match=match):
        EventRecipe(**{field: value})


def test_recipe_and_model_types():
    xs, ys = _task()
    with pytest.raises(TypeError, match="recipe must be an EventRecipe"):
        train_events(_net(), xs, ys, epochs=1, budget=0.1, recipe={"lr": 1e-3})
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        train_events("net", xs, ys, epochs=1, budget=0.1)


def _benchmark():
    path = ROOT / "benchmarks" / "end_to_end_curves.py"
    spec = importlib.util.spec_from_file_location("end_to_end_curves", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["end_to_end_curves"] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_benchmark_quick(tmp_path):
    out = tmp_path / "curves.json"
    payload = _benchmark().main(["--quick", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["quick"] is True and saved["summary"] == payload["summary"]
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file
    methods = {(r["task"], r["method"]) for r in saved["rows"]}
    for task in ("digits", "BasicMotions", "GunPoint"):
        for m in ("dense source", "dense, same recipe", "calibrated", "pipeline", "end-to-end"):
            assert (task, m) in methods
    for r in saved["rows"]:
        assert 0.0 <= r["accuracy"] <= 1.0
        if r["method"] in ("pipeline", "end-to-end", "calibrated"):
            assert r["ratio"] == pytest.approx(r["dense_synops"] / r["synops"])
    acc = saved["acceptance"]
    for task, v in acc["tasks"].items():
        src = next(s for s in saved["summary"]
                   if s["task"] == task and s["method"] == "dense source")  # fmt: skip
        assert v["dense_source_accuracy"] == src["accuracy"]
        best = v["best_e2e_at_10x"]
        assert v["passes"] == (best is not None and best["accuracy"] > src["accuracy"])
    assert acc["passed"] == sum(v["passes"] for v in acc["tasks"].values())
