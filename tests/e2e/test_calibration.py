"""calibrate_thresholds: the tolerance holds, synops fall, greedy beats or matches front-to-back."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import braingate as bg
from braingate.calibration import calibrate_thresholds


def _model() -> nn.Sequential:
    return nn.Sequential(
        bg.EventLinear(8, 32, 8), nn.ReLU(), bg.EventLinear(32, 32, 8), nn.ReLU(),
        bg.EventLinear(32, 4, 4),
    )  # fmt: skip


@pytest.fixture
def setup(rng):
    net = _model()
    xs = torch.from_numpy(rng.standard_normal((24, 16, 8)).cumsum(0) * 0.3).float()
    ys, _ = bg.simulate(net, xs, mode="dense")
    labels = ys.mean(0).argmax(-1)  # the exact network is right on every stream
    return net, xs, labels


def _acc(net, xs, labels) -> float:
    out, _ = bg.simulate(net, xs)
    return float((out.mean(0).argmax(-1) == labels).double().mean())


def test_accuracy_tolerance_holds_and_synops_fall(setup):
    net, xs, labels = setup
    _, exact = bg.simulate(net, xs)
    res = calibrate_thresholds(net, xs, labels, tolerance=0.1, max_evals=40)
    assert res.reference_score == 1.0
    assert _acc(net, xs, labels) >= 1.0 - 0.1  # the model keeps the chosen thresholds
    _, rep = bg.simulate(net, xs)
    assert rep.total["synops"] == pytest.approx(res.synops)
    assert res.synops < 0.7 * exact.total["synops"]
    assert res.ratio > exact.ratio()
    assert set(res.thresholds) == {"0", "2", "4"}


def test_relative_error_tolerance_without_labels(setup):
    net, xs, _ = setup
    ref, _ = bg.simulate(net, xs, mode="dense")
    res = calibrate_thresholds(net, xs, None, tolerance=0.05, max_evals=40)
    out, _ = bg.simulate(net, xs)
    assert float((out - ref).norm() / ref.norm()) <= 0.05 + 1e-4
    assert res.ratio > 1.0 and res.score >= -0.05 - 1e-9


def test_greedy_beats_or_matches_front_to_back(setup):
    net, xs, labels = setup
    other = copy.deepcopy(net)
    greedy = calibrate_thresholds(net, xs, labels, tolerance=0.0, max_evals=80)
    f2b = calibrate_thresholds(other, xs, labels, tolerance=0.0, strategy="front_to_back",
                               max_evals=80)  # fmt: skip
    assert greedy.score >= greedy.reference_score and f2b.score >= f2b.reference_score
    assert greedy.synops <= f2b.synops * 1.001


def test_per_step_labels_and_callable_metric(setup):
    net, xs, _ = setup
    ref, _ = bg.simulate(net, xs, mode="dense")
    per_step = ref.argmax(-1)  # (T, B)
    res = calibrate_thresholds(net, xs, per_step, tolerance=0.2, max_evals=20)
    assert res.reference_score == pytest.approx(1.0)
    assert res.score >= 0.8 - 1e-9
    res = calibrate_thresholds(net, xs, None, tolerance=0.5, max_evals=20,
                               metric=lambda out, exact: -float((out - exact).abs().max()))  # fmt: skip
    assert res.score >= res.reference_score - 0.5 - 1e-9


def test_keeps_learned_per_unit_shape(setup):
    net, xs, labels = setup
    net[0].threshold = torch.linspace(0.01, 0.1, 8)
    calibrate_thresholds(net, xs, labels, tolerance=0.05, max_evals=20)
    th = net[0].threshold
    if isinstance(th, torch.Tensor) and th.dim() == 1 and float(th[0]) > 0:
        assert float(th[-1] / th[0]) == pytest.approx(10.0, rel=1e-3)


@pytest.mark.parametrize(
    ("kw", "err", "match"),
    [
        ({"strategy": "random"}, ValueError, "greedy"),
        ({"tolerance": -1}, ValueError, "tolerance"),
        ({"metric": "f1"}, ValueError, "accuracy"),
        ({"readout": "max"}, ValueError, "mean"),
    ],
)
def test_errors(setup, kw, err, match):
    net, xs, labels = setup
    with pytest.raises(err, match=match):
        calibrate_thresholds(net, xs, labels, **kw)


def test_model_without_event_layers():
    with pytest.raises(ValueError, match="convert"):
        calibrate_thresholds(nn.Linear(3, 2), torch.zeros(4, 2, 3))
