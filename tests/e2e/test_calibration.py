"""calibrate_thresholds: the tolerance holds, synops fall, greedy beats or matches front-to-back,
bad arguments are refused without touching the model."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from torch import nn

import braingate as bg
from braingate.calibration import CalibrationWarning, calibrate_thresholds


def _model() -> nn.Sequential:
    net = nn.Sequential(
        bg.EventLinear(8, 32, 8), nn.ReLU(), bg.EventLinear(32, 32, 8), nn.ReLU(),
        bg.EventLinear(32, 4, 4),
    )  # fmt: skip
    with torch.no_grad():
        net[4].bias.zero_()  # decisions spread over all four classes
    return net


@pytest.fixture
def setup(rng):
    net = _model()
    xs = torch.from_numpy(rng.standard_normal((24, 96, 8)).cumsum(0) * 0.3).float()
    ys, _ = bg.simulate(net, xs, mode="dense")
    labels = ys.mean(0).argmax(-1)  # the exact network is right on every stream
    assert labels.unique().numel() == 4
    return net, xs, labels


def _acc(net, xs, labels) -> float:
    out, _ = bg.simulate(net, xs)
    return float((out.mean(0).argmax(-1) == labels).double().mean())


def test_accuracy_tolerance_holds_and_synops_fall(setup):
    net, xs, labels = setup
    _, exact = bg.simulate(net, xs)
    res = calibrate_thresholds(net, xs, labels, tolerance=0.1, max_evals=40)
    assert res.reference_score == 1.0 and res.holdout_reference_score == 1.0
    assert res.score >= 1.0 - 0.1 and res.holdout_score >= 1.0 - 0.1
    assert _acc(net, xs, labels) >= 1.0 - 0.1  # the model keeps the chosen thresholds
    _, rep = bg.simulate(net, xs)
    assert rep.total["synops"] == pytest.approx(res.synops, rel=1e-6)  # both parts, weighted
    assert res.synops < 0.8 * exact.total["synops"]
    assert res.ratio > exact.ratio()
    assert set(res.thresholds) == {"0", "2", "4"}
    assert res.evaluations <= 40 + 8  # a back-off after the held-out check may add up to 8


def test_without_the_guards_it_searches_as_before(setup):
    """No held-out part, no noise margin, a sample lost only when it flips: the plain search on
    the data given, which saves more there (and generalises less: test_calibration_holdout)."""
    net, xs, labels = setup
    guarded = calibrate_thresholds(copy.deepcopy(net), xs, labels, tolerance=0.1, max_evals=40)
    plain = calibrate_thresholds(net, xs, labels, tolerance=0.1, max_evals=40, holdout=0.0,
                                 confidence=0.5, safety=1.0)  # fmt: skip
    assert plain.margin == 0.0 and plain.holdout_score is None
    assert 0.9 - 1e-9 <= plain.score < guarded.score
    assert plain.synops < 0.7 * guarded.synops


def test_relative_error_tolerance_without_labels(setup):
    net, xs, _ = setup
    ref, _ = bg.simulate(net, xs, mode="dense")
    res = calibrate_thresholds(net, xs, None, tolerance=0.05, max_evals=40)
    out, _ = bg.simulate(net, xs)
    assert float((out - ref).norm() / ref.norm()) <= 0.05 + 1e-4
    assert res.ratio > 1.0 and res.score >= -0.05 - 1e-9 and res.margin > 0
    assert res.holdout_score >= -0.05 - 1e-9


def test_greedy_beats_or_matches_front_to_back(setup):
    net, xs, labels = setup
    other = copy.deepcopy(net)
    kw = {"tolerance": 0.0, "max_evals": 80, "holdout": 0.0}  # compare the searches alone
    greedy = calibrate_thresholds(net, xs, labels, **kw)
    f2b = calibrate_thresholds(other, xs, labels, strategy="front_to_back", **kw)
    assert greedy.score >= greedy.reference_score and f2b.score >= f2b.reference_score
    assert greedy.synops <= f2b.synops * 1.001


def test_per_step_labels_and_callable_metric(setup):
    net, xs, _ = setup
    ref, _ = bg.simulate(net, xs, mode="dense")
    per_step = ref.argmax(-1)  # (T, B)
    res = calibrate_thresholds(net, xs, per_step, tolerance=0.2, max_evals=20)
    assert res.reference_score == pytest.approx(1.0)
    assert res.score >= 0.8 - 1e-9
    assert res.samples + res.holdout_samples == per_step.numel()  # a decision per step
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
        ({"tolerance": -1}, ValueError, r"tolerance=-1 .*pass e\.g\. tolerance=0\.01"),
        ({"tolerance": math.nan}, ValueError, r"tolerance=nan .*pass e\.g\. tolerance=0\.01"),
        ({"tolerance": math.inf}, ValueError, r"tolerance=inf .*finite"),
        ({"tolerance": "0.01"}, TypeError, "tolerance must be a number"),
        ({"max_evals": -5}, ValueError, r"max_evals=-5 must be >= 1.*pass e\.g\. max_evals=200"),
        ({"max_evals": 0}, ValueError, "max_evals=0"),
        ({"max_evals": 2.5}, TypeError, "max_evals must be an int"),
        ({"max_evals": True}, TypeError, "max_evals must be an int"),
        ({"holdout": 1.5}, ValueError, r"holdout=1\.5 .*pass e\.g\. holdout=0\.25"),
        ({"holdout": math.nan}, ValueError, "holdout=nan"),
        ({"confidence": 1.0}, ValueError, r"confidence=1\.0 .*pass e\.g\. confidence=0\.9"),
        ({"safety": 0.5}, ValueError, r"safety=0\.5 .*pass e\.g\. safety=2"),
        ({"seed": 1.0}, TypeError, "seed must be an int"),
        ({"metric": "f1"}, ValueError, "accuracy"),
        ({"metric": "agreement"}, ValueError, "ys=None"),
        ({"readout": "max"}, ValueError, "'mean', 'last', 'step'"),
        ({"validation": torch.zeros(3, 2, 8)}, ValueError, r"\(xs_val, ys_val\)"),
        ({"validation": (torch.zeros(3, 2, 5), torch.zeros(2, dtype=torch.long))}, ValueError,
         r"pass \(T', B', 8\)"),
        ({"validation": (torch.zeros(3, 2, 8), torch.zeros(3, 2, dtype=torch.long))}, ValueError,
         "per step but ys is per sample"),
        ({"validation": [1, 2, 3]}, TypeError, "validation must be"),
    ],
)  # fmt: skip
def test_errors_name_the_argument_and_leave_the_model_untouched(setup, kw, err, match):
    net, xs, labels = setup
    net[0].threshold = 0.3
    before = copy.deepcopy(net.state_dict()), [(m.threshold, m.latent_threshold) for m in net[::2]]
    with pytest.raises(err, match=match):
        calibrate_thresholds(net, xs, labels, **kw)
    assert [(m.threshold, m.latent_threshold) for m in net[::2]] == before[1]
    after = net.state_dict()
    assert after.keys() == before[0].keys()
    for k, v in after.items():
        assert torch.equal(v, before[0][k]) if isinstance(v, torch.Tensor) else v == before[0][k]


@pytest.mark.parametrize(
    ("ys", "kw", "err", "match"),
    [
        (torch.zeros(5, dtype=torch.long), {}, ValueError, r"pass labels per sample \(B,\)=\(96,\)"),
        (torch.zeros(96), {}, TypeError, r"integer class labels.*ys\.long\(\)"),
        (torch.zeros(24, 96, dtype=torch.long), {"readout": "mean"}, ValueError,
         "per-step labels"),
        (torch.full((96,), 7), {}, ValueError, r"label 7 .*4 class scores"),
    ],
)  # fmt: skip
def test_label_errors(setup, ys, kw, err, match):
    net, xs, _ = setup
    with pytest.raises(err, match=match):
        calibrate_thresholds(net, xs, ys, max_evals=5, **kw)
    assert all(m.threshold == 0.0 and m.latent_threshold == 0.0 for m in net[::2])


def test_a_failure_mid_search_restores_the_thresholds(setup):
    net, xs, _ = setup
    net[2].latent_threshold = 0.2
    calls = []

    def metric(out, exact):  # fails after the search has set thresholds a few times
        calls.append(1)
        if len(calls) > 40:
            raise RuntimeError("metric failed")
        return -float((out - exact).abs().mean())

    with pytest.raises(RuntimeError, match="metric failed"):
        calibrate_thresholds(net, xs, metric=metric, tolerance=0.5, max_evals=50)
    assert net[2].latent_threshold == 0.2 and net[0].threshold == 0.0


def test_model_without_event_layers():
    with pytest.raises(ValueError, match="convert"):
        calibrate_thresholds(nn.Linear(3, 2), torch.zeros(4, 2, 3))


def test_no_warning_when_the_data_resolves_the_tolerance(setup):
    net, xs, labels = setup
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalibrationWarning)
        res = calibrate_thresholds(net, xs, labels, tolerance=0.05, holdout=0.0, max_evals=10)
    assert res.warnings == [] and res.holdout_score is None
