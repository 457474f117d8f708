"""calibrate_thresholds beyond its own data: held-out check and back-off, validation streams,
decision readouts, the noise margin and near misses, warnings, conv / recurrent layers, and the
calibration_holdout benchmark."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import sys
import warnings
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
import torch
from torch import nn

import braingate as bg
from braingate.calibration import CalibrationWarning, calibrate_thresholds
from braingate.calibration.judge import DecisionJudge, MetricJudge, decision_readout, rate_bound
from braingate.nn.event_conv import EventConv1d
from braingate.nn.event_rnn import EventGRU

ROOT = Path(__file__).resolve().parents[2]


def _model() -> nn.Sequential:
    net = nn.Sequential(
        bg.EventLinear(8, 32, 8), nn.ReLU(), bg.EventLinear(32, 32, 8), nn.ReLU(),
        bg.EventLinear(32, 4, 4),
    )  # fmt: skip
    with torch.no_grad():
        net[4].bias.zero_()
    return net


def _walk(rng, T: int, B: int, step: float = 0.3) -> torch.Tensor:
    return torch.from_numpy(rng.standard_normal((T, B, 8)).cumsum(0) * step).float()


@pytest.fixture
def setup(rng):
    net = _model()
    xs = _walk(rng, 24, 96)
    labels = bg.simulate(net, xs, mode="dense")[0].mean(0).argmax(-1)
    return net, xs, labels


def _acc(net, xs, labels, readout=lambda o: o.mean(0)) -> float:
    out, _ = bg.simulate(net, xs)
    return float((readout(out).argmax(-1) == labels).double().mean())


# -- held-out part, validation stream, back-off -----------------------------------------------
def test_a_quarter_is_held_out_and_its_score_reported(setup):
    net, xs, labels = setup
    res = calibrate_thresholds(net, xs, labels, tolerance=0.1, max_evals=30)
    assert (res.samples, res.holdout_samples) == (72, 24)  # stratified: 3/4 of every class kept
    assert res.holdout_reference_score == 1.0
    assert res.holdout_drop <= 0.1 + 1e-12
    assert "held out:" in res.summary()


def test_a_validation_stream_is_the_check(setup, rng):
    net, xs, labels = setup
    xv = _walk(rng, 24, 40)
    yv = bg.simulate(net, xv, mode="dense")[0].mean(0).argmax(-1)
    res = calibrate_thresholds(net, xs, labels, tolerance=0.1, max_evals=30, validation=(xv, yv))
    assert (res.samples, res.holdout_samples) == (96, 40)
    assert res.holdout_score == pytest.approx(_acc(net, xv, yv))
    assert res.holdout_drop <= 0.1 + 1e-12
    _, rep = bg.simulate(net, xs)
    assert rep.total["synops"] == pytest.approx(res.synops, rel=1e-6)  # on xs alone


def test_backs_off_when_the_held_out_data_disagree(setup, rng):
    """Validation streams picked for their small decision margins lose decisions at thresholds
    chosen on typical streams: the check scales the thresholds down until the drop there is
    within tolerance."""
    net, xs, labels = setup
    pool = _walk(rng, 24, 2000)
    top = bg.simulate(net, pool, mode="dense")[0].mean(0).topk(2, -1).values
    xv = pool[:, (top[:, 0] - top[:, 1]).argsort()[:64]]
    yv = bg.simulate(net, xv, mode="dense")[0].mean(0).argmax(-1)
    blind = copy.deepcopy(net)
    calibrate_thresholds(blind, xs, labels, tolerance=0.05, max_evals=40, holdout=0.0)
    assert 1.0 - _acc(blind, xv, yv) > 0.05  # what the check must catch
    res = calibrate_thresholds(net, xs, labels, tolerance=0.05, max_evals=40, validation=(xv, yv))
    assert res.backoff < 1.0
    assert 1.0 - _acc(net, xv, yv) <= 0.05 + 1e-12
    assert res.holdout_score == pytest.approx(_acc(net, xv, yv))


def test_holdout_zero_checks_nothing(setup):
    net, xs, labels = setup
    res = calibrate_thresholds(net, xs, labels, tolerance=0.1, max_evals=10, holdout=0)
    assert res.holdout_score is None and res.holdout_drop is None and res.samples == 96
    assert "nothing" in res.summary()


# -- decisions: readouts, margins, near misses --------------------------------------------------
@pytest.mark.parametrize(
    "readout",
    ["mean", "last", lambda out: out.amax(0)],  # a callable: the peak logit over time
    ids=["mean", "last", "callable"],
)
def test_the_tolerance_holds_for_the_decision_made(setup, readout):
    net, xs, _ = setup
    read = decision_readout(readout)
    labels = read(bg.simulate(net, xs, mode="dense")[0]).argmax(-1)
    calibrate_thresholds(net, xs, labels, tolerance=0.05, readout=readout, max_evals=30)
    # search part: drop + margin <= tol; held-out part: drop <= tol; so everywhere <= tol
    assert _acc(net, xs, labels, read) >= 1.0 - 0.05 - 1e-12


def test_per_step_readout_counts_every_step(setup):
    net, xs, labels = setup
    res = calibrate_thresholds(net, xs, labels, readout="step", tolerance=0.1, max_evals=20)
    assert res.samples + res.holdout_samples == xs.shape[0] * xs.shape[1]
    out, _ = bg.simulate(net, xs)
    exact, _ = bg.simulate(net, xs, mode="dense")
    ref = float((exact.argmax(-1) == labels).double().mean())
    assert float((out.argmax(-1) == labels).double().mean()) >= ref - 0.1 - 1e-12


def test_a_near_miss_counts_as_a_loss():
    exact = torch.tensor([[[3.0, 1.0], [0.0, 2.0]]])  # (T=1, B=2, C=2): margins 2 and 2
    eaten = torch.tensor([[[2.3, 1.5], [0.0, 2.0]]])  # sample 0 loses 60 % of its margin
    read = decision_readout("mean")
    labels = torch.tensor([0, 1])
    strict = DecisionJudge(exact, labels, read, tolerance=0.6, z=0.0, safety=2.0)
    lenient = DecisionJudge(exact, labels, read, tolerance=0.6, z=0.0, safety=1.0)
    assert strict(eaten).score == lenient(eaten).score == 1.0  # no decision flipped
    assert strict(eaten).drop == pytest.approx(0.5) and lenient(eaten).drop == 0.0


def test_unseen_pairs_of_margin_and_erosion_count():
    """A small margin and a large erosion on different samples still add up to a likely loss
    on unseen data: the estimate pairs every correct margin with every erosion seen."""
    exact = torch.tensor([[[1.1, 1.0], [9.0, 0.0], [5.0, 0.0], [5.0, 0.0]]])  # margins .1 9 5 5
    out = exact.clone()
    out[0, 1, 0] -= 3.0  # sample 1 loses 3 of its 9: no flip, no near miss
    judge = DecisionJudge(exact, None, decision_readout("mean"), 0.5, z=0.0, safety=1.0)
    v = judge(out)
    assert v.score == 1.0
    assert v.drop == pytest.approx(1 / 16)  # the pair (margin 0.1, erosion 3)


def test_the_noise_margin_shrinks_with_samples():
    read = decision_readout("mean")
    few = torch.randn(1, 20, 3, generator=torch.Generator().manual_seed(0))
    many = torch.randn(1, 2000, 3, generator=torch.Generator().manual_seed(0))
    j_few = DecisionJudge(few, None, read, tolerance=0.01, z=1.28, safety=2.0)
    j_many = DecisionJudge(many, None, read, tolerance=0.01, z=1.28, safety=2.0)
    assert not j_few.resolvable and j_many.resolvable
    alpha = 1 - NormalDist().cdf(1.28)
    assert j_many(many).margin == pytest.approx(1 - alpha ** (1 / 2000))  # no loss in 2000
    assert j_many(many).feasible and j_few(few).feasible  # the exact run is always accepted


@pytest.mark.parametrize(("k", "n"), [(0, 28), (1, 28), (3, 100), (12, 674), (50, 400)])
def test_the_margin_is_the_exact_binomial_bound(k, n):
    """Clopper-Pearson: at the bound, k or fewer events in n trials have probability 1 - conf
    (summed here with math.comb, sharing nothing with the judge's log-space sum)."""
    conf = 0.9
    p = rate_bound(k, n, NormalDist().inv_cdf(conf))
    cdf = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))
    assert cdf == pytest.approx(1 - conf, rel=1e-6)
    assert k / n < p < 1
    # no margin at confidence 0.5; the normal form beyond 50 events
    assert rate_bound(k, n, 0.0) == k / n
    assert rate_bound(60, 1000, 1.5) == pytest.approx((60 + 1.5 * math.sqrt(61)) / 1000)


def test_a_loss_free_run_on_28_samples_cannot_vouch_for_5_points():
    """No loss in 28 decisions bounds the loss rate by 7.9 % (90 %), not by z/N = 4.6 %: the
    judge is strict at tolerance 0.05 and resolves it from 45 decisions on."""
    read = decision_readout("mean")
    z = NormalDist().inv_cdf(0.9)
    for n, resolvable in ((28, False), (44, False), (45, True)):
        exact = torch.randn(1, n, 3, generator=torch.Generator().manual_seed(n))
        assert DecisionJudge(exact, None, read, 0.05, z, 2.0).resolvable is resolvable


def test_a_callable_metric_gets_a_bootstrap_margin(rng):
    exact = torch.from_numpy(rng.standard_normal((5, 50, 3))).float()
    noisy = exact + 0.3 * torch.from_numpy(rng.standard_normal((5, 50, 3))).float()

    def metric(out, target):
        return -float((out - target).abs().mean())

    judge = MetricJudge(metric, exact, exact, 1, tolerance=1.0, z=1.28, seed=0)
    v = judge(noisy)
    assert v.drop == pytest.approx(-metric(noisy, exact)) and v.margin > 0
    assert judge(exact).margin == 0.0


# -- warnings ---------------------------------------------------------------------------------
def test_warns_when_the_samples_cannot_resolve_the_tolerance(rng):
    net = _model()
    xs = _walk(rng, 24, 40)
    labels = bg.simulate(net, xs, mode="dense")[0].mean(0).argmax(-1)
    with pytest.warns(
        CalibrationWarning, match=r"30 decisions.*needs >= 230 decisions.*headroom=2.*up to 7\.4%"
    ):
        res = calibrate_thresholds(net, xs, labels, tolerance=0.01, max_evals=20)
    assert res.score == res.reference_score  # strict: no decision on the search part lost
    assert any("cannot be told" in w for w in res.warnings)


def test_warns_when_a_class_is_missing(setup):
    net, xs, labels = setup
    keep = labels != 3
    with pytest.warns(CalibrationWarning, match=r"no sample of 1 of 4 classes \(3\)"):
        calibrate_thresholds(net, xs[:, keep], labels[keep], tolerance=0.1, max_evals=10)


def test_warns_when_nothing_can_be_held_out(setup):
    net, xs, _ = setup
    one = xs[:, :1]
    steps = bg.simulate(net, one, mode="dense")[0].argmax(-1)  # (T, 1) per-step labels
    with pytest.warns(CalibrationWarning, match="too few to hold out"):
        res = calibrate_thresholds(net, one, steps, tolerance=0.2, max_evals=10)
    assert res.holdout_score is None and res.samples == xs.shape[0]


# -- other layer types, through the protocol ----------------------------------------------------
def _protocol_models(rng):
    torch.manual_seed(0)
    gru = nn.Sequential(EventGRU(6, 32, 8, return_state=False), bg.EventLinear(32, 4, 4))
    conv = nn.Sequential(EventConv1d(3, 8, 3, 4), nn.ReLU(), nn.Flatten(),
                         bg.EventLinear(8 * 14, 4, 4))  # fmt: skip
    xg = torch.from_numpy(rng.standard_normal((30, 96, 6)).cumsum(0) * 0.3).float()
    xc = torch.from_numpy(rng.standard_normal((20, 96, 3, 16)).cumsum(0) * 0.3).float()
    return {"gru": (gru, xg), "conv": (conv, xc)}


@pytest.mark.parametrize("kind", ["gru", "conv"])
def test_recurrent_and_conv_networks_calibrate(rng, kind):
    net, xs = _protocol_models(rng)[kind]
    _, exact = bg.simulate(net, xs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        res = calibrate_thresholds(net, xs, metric="agreement", tolerance=0.05, max_evals=30)
    names = {"gru": {"threshold", "hidden_threshold", "latent_threshold"},
             "conv": {"threshold", "latent_threshold"}}[kind]  # fmt: skip
    assert set(res.thresholds[next(iter(res.thresholds))]) == names
    assert res.holdout_drop <= 0.05 + 1e-12
    _, rep = bg.simulate(net, xs)
    assert rep.total["synops"] < exact.total["synops"]
    assert rep.total["synops"] == pytest.approx(res.synops, rel=1e-6)


# -- real data ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_digits_tolerance_holds_on_a_test_split():
    """sklearn digits rows: calibrated on the training split, the test drop stays within the
    tolerance plus one point (the benchmark's acceptance, one case)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).transpose(0, 1).contiguous()
    tr, te = train_test_split(np.arange(len(d.target)), test_size=0.5, random_state=0,
                              stratify=d.target)  # fmt: skip
    tr, te = torch.as_tensor(tr), torch.as_tensor(te)
    y = torch.as_tensor(d.target)
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(dense.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.cross_entropy(dense(x[:, tr]).mean(0), y[tr])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net = bg.convert(dense, rank={"0": 8, "2": 10})
    ref = _acc(net, x[:, te], y[te])
    res = calibrate_thresholds(net, x[:, tr], y[tr], tolerance=0.02, max_evals=60)
    assert ref - _acc(net, x[:, te], y[te]) <= 0.02 + 0.01
    assert res.ratio > 1.0 and res.holdout_drop <= 0.02 + 1e-12


def _benchmark():
    path = ROOT / "benchmarks" / "calibration_holdout.py"
    spec = importlib.util.spec_from_file_location("calibration_holdout", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["calibration_holdout"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_quick(tmp_path):
    out = tmp_path / "cal.json"
    payload = _benchmark().main(
        ["--quick", "--tasks", "BasicMotions", "--tolerances", "0.05", "--out", str(out)]
    )
    saved = json.loads(out.read_text())
    assert saved["summary"] == payload["summary"] and saved["quick"] is True
    (row,) = saved["rows"]
    assert row["task"] == "BasicMotions" and row["tolerance"] == 0.05
    assert row["drop"] == pytest.approx(row["ref_acc"] - row["test_acc"])
    assert row["pass"] == (row["drop"] <= 0.05 + 0.01 + 1e-9)
    assert row["saving_vs_dense"] > 1.0 and row["holdout_score"] is not None
    assert saved["summary"]["cases"] == 1 and saved["summary"]["passed"] == int(row["pass"])
    assert not list(tmp_path.glob("*.tmp"))  # written through a temporary file


@pytest.mark.slow
def test_benchmark_quick_conv_and_recurrent_rows(tmp_path):
    """The saccade-digits CNN and the GunPoint GRU rows: converted by bg.convert (EventConv2d,
    EventGRU), calibrated on streams, judged on the test streams' mean-logit decisions."""
    out = tmp_path / "cal.json"
    payload = _benchmark().main(["--quick", "--tasks", "saccade-CNN", "GunPoint-GRU",
                                 "--tolerances", "0.05", "--out", str(out)])  # fmt: skip
    rows = {r["task"]: r for r in payload["rows"]}
    assert set(rows) == {"saccade-CNN", "GunPoint-GRU"}
    assert (rows["saccade-CNN"]["kind"], rows["GunPoint-GRU"]["kind"]) == ("conv", "recurrent")
    for r in rows.values():
        assert r["drop"] == pytest.approx(r["ref_acc"] - r["test_acc"])
        assert r["saving_vs_exact"] > 1.0 and r["holdout_score"] is not None
    kinds = payload["summary"]["per_kind"]
    assert {k: v["cases"] for k, v in kinds.items()} == {"conv": 1, "recurrent": 1}
    assert sum(v["passed"] for v in kinds.values()) == payload["summary"]["passed"]
