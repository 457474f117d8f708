"""calibrate_thresholds on converted conv and recurrent networks over real streams, judged on
the stream-level decision; the threshold headroom of the strict search."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import braingate as bg
from braingate.calibration import CalibrationWarning, calibrate_thresholds


def _acc(net, xs, ys, read) -> float:
    out, _ = bg.simulate(net, xs, mode="event")
    return float((read(out).argmax(-1) == ys).double().mean())


def _knobs(res) -> list[float]:
    return [v for layer in res.thresholds.values() for v in layer.values()]


@pytest.fixture(scope="module")
def saccade_cnn():
    """A small CNN trained on single saccade-digit frames, converted by bg.convert."""
    from braingate.datasets.saccade import saccade_digits

    d = saccade_digits(steps_per_saccade=2, n=400, test_fraction=0.5, seed=0)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    T, N = d.x_train.shape[:2]
    for _ in range(6):
        for idx in torch.randperm(N).split(50):
            f = torch.randint(0, T, (2,))
            loss = F.cross_entropy(net(d.x_train[f][:, idx].flatten(0, 1)),
                                   d.y_train[idx].repeat(2))  # fmt: skip
            opt.zero_grad()
            loss.backward()
            opt.step()
    return bg.convert(net, rank={"0": 6, "3": 8, "7": 10}), d


@pytest.mark.slow
def test_a_converted_cnn_keeps_its_stream_decisions(saccade_cnn):
    """Calibrated on training streams with the mean readout: the held-out check holds, the
    test decisions stay within tolerance + 1 point, and the thresholds save synops."""
    template, d = saccade_cnn
    net = copy.deepcopy(template)
    read = lambda out: out.mean(0)  # noqa: E731
    ref = _acc(copy.deepcopy(template), d.x_test, d.y_test, read)
    _, exact = bg.simulate(copy.deepcopy(template), d.x_test, mode="event")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        res = calibrate_thresholds(net, d.x_train, d.y_train, tolerance=0.02, readout="mean",
                                   max_evals=25, seed=0)  # fmt: skip
    assert set(res.thresholds) == {"0", "3", "7"}  # both EventConv2d layers and the head
    assert {"threshold", "latent_threshold"} <= set(res.thresholds["0"])
    assert res.holdout_drop <= 0.02 + 1e-12
    assert ref - _acc(net, d.x_test, d.y_test, read) <= 0.02 + 0.01
    _, rep = bg.simulate(net, d.x_test, mode="event")
    assert rep.total["synops"] < exact.total["synops"]


class _GRUClassifier(nn.Module):
    def __init__(self, n: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.gru, self.head = nn.GRU(n, hidden), nn.Linear(hidden, classes)

    def forward(self, xs):
        out, _ = self.gru(xs)
        return self.head(out.flatten(0, 1)).unflatten(0, out.shape[:2])  # (T, B, C)


@pytest.mark.slow
@pytest.mark.parametrize("readout", ["mean", "last"])
def test_a_converted_gru_keeps_its_stream_decisions(readout):
    """nn.GRU + head, converted by bg.convert (EventGRU, EventLinear), calibrated on GunPoint's
    training streams: the held-out check holds and the decisions on the test streams stay
    within tolerance + 1 point at fewer synops."""
    pytest.importorskip("aeon")
    from braingate.datasets.sensors import gun_point

    d = gun_point()
    read = (lambda o: o.mean(0)) if readout == "mean" else (lambda o: o[-1])
    torch.manual_seed(0)
    model = _GRUClassifier(1, 16, 2)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(40):
        for idx in torch.randperm(d.x_train.shape[1]).split(25):
            loss = F.cross_entropy(read(model(d.x_train[:, idx])), d.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    template = bg.convert(model, rank={"gru": 8, "head": 2})
    assert isinstance(template.gru, bg.EventGRU)
    net = copy.deepcopy(template)
    ref = _acc(copy.deepcopy(template), d.x_test, d.y_test, read)
    _, exact = bg.simulate(copy.deepcopy(template), d.x_test, mode="event")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)  # 50 streams: the strict search
        res = calibrate_thresholds(net, d.x_train, d.y_train, tolerance=0.02, readout=readout,
                                   max_evals=40, seed=0)  # fmt: skip
    assert set(res.thresholds["gru"]) == {"threshold", "hidden_threshold", "latent_threshold"}
    assert res.headroom == 2.0  # 37 decisions cannot resolve 2 points
    assert res.holdout_drop <= 0.02 + 1e-12
    assert ref - _acc(net, d.x_test, d.y_test, read) <= 0.02 + 0.01
    _, rep = bg.simulate(net, d.x_test, mode="event")
    assert rep.total["synops"] < exact.total["synops"]


# -- headroom -----------------------------------------------------------------------------------
def _walk_net(rng):
    torch.manual_seed(0)
    net = nn.Sequential(bg.EventLinear(6, 24, 6), nn.ReLU(), bg.EventLinear(24, 3, 3))
    xs = torch.from_numpy(rng.standard_normal((16, 40, 6)).cumsum(0) * 0.3).float()
    labels = bg.simulate(net, xs, mode="dense")[0].mean(0).argmax(-1)
    return net, xs, labels


def test_the_strict_search_halves_what_it_finds(rng):
    """Few samples: the thresholds found are divided by 2 (the same search: exactly half of
    what headroom=1 keeps), and the warning says so."""
    net, xs, labels = _walk_net(rng)
    a, b = copy.deepcopy(net), copy.deepcopy(net)
    kw = {"tolerance": 0.05, "max_evals": 20, "holdout": 0.0}
    with pytest.warns(CalibrationWarning, match="divided by headroom=2"):
        auto = calibrate_thresholds(a, xs, labels, **kw)
    with pytest.warns(CalibrationWarning) as caught:
        none = calibrate_thresholds(b, xs, labels, headroom=1, **kw)
    assert not any("headroom" in str(w.message) for w in caught)
    assert (auto.headroom, none.headroom) == (2.0, 1.0)
    assert any(v > 0 for v in _knobs(none))
    assert _knobs(auto) == pytest.approx([v / 2 for v in _knobs(none)])
    assert auto.synops >= none.synops and "headroom 2" in auto.summary()


def test_resolvable_data_get_no_headroom_unless_asked(rng):
    net, xs, labels = _walk_net(rng)
    res = calibrate_thresholds(copy.deepcopy(net), xs, labels, tolerance=0.3, max_evals=15)
    assert res.headroom == 1.0  # 30 decisions resolve 30 points
    res3 = calibrate_thresholds(copy.deepcopy(net), xs, labels, tolerance=0.3, max_evals=15,
                                headroom=3)  # fmt: skip
    assert res3.headroom == 3.0


@pytest.mark.parametrize("bad", [0.5, float("nan"), float("inf")])
def test_a_bad_headroom_is_refused_before_anything_changes(rng, bad):
    net, xs, labels = _walk_net(rng)
    before = [float(m.threshold) for m in net if isinstance(m, bg.EventLinear)]
    with pytest.raises(ValueError, match=f"headroom={bad}"):
        calibrate_thresholds(net, xs, labels, headroom=bad)
    with pytest.raises(TypeError, match="headroom must be a number"):
        calibrate_thresholds(net, xs, labels, headroom="2")
    assert [float(m.threshold) for m in net if isinstance(m, bg.EventLinear)] == before
