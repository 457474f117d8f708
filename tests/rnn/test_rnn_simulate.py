"""Recurrent event layers through simulate, Report, calibrate_thresholds and training helpers."""

import numpy as np
import pytest
import torch
from torch import nn

import braingate as bg
from braingate.nn.event_rnn import EventGRU, EventLSTM


def _net(th=0.0):
    torch.manual_seed(0)
    return nn.Sequential(
        EventGRU(4, 8, (4, 4), threshold=th, hidden_threshold=th, latent_threshold=th,
                 return_state=False),
        bg.EventLinear(8, 3, 3, threshold=th, latent_threshold=th),
    )  # fmt: skip


def test_simulate_event_equals_dense_at_zero_threshold_and_counts_per_step():
    net = _net()
    xs = (0.3 * torch.randn(15, 2, 4)).cumsum(0)
    yd, rd = bg.simulate(net, xs, mode="dense")
    ye, re = bg.simulate(net, xs, mode="event")
    assert torch.allclose(yd, ye, atol=1e-5)
    G, H = 3, 8
    assert re.total["dense_synops"] == pytest.approx(15 * (G * H * (4 + H) + 8 * 3))
    assert rd.total["neuron_ops"] == re.total["neuron_ops"] == 15 * 3 * H
    assert len(re.trace["0"]["synops"]) == 15
    # the per-step trace is the module's own counters, step by step
    bg.reset(net)
    with bg.execution(net, "event"), torch.no_grad():
        per_step = []
        for x in xs:
            net(x)
            per_step.append(float(net[0].last_counts.synops.mean()))
    assert np.allclose(re.trace["0"]["synops"], per_step)


def test_report_round_trip_keeps_the_recurrent_description(tmp_path):
    net = _net(0.05)
    _, rep = bg.simulate(net, (0.3 * torch.randn(6, 2, 4)).cumsum(0), mode="event")
    path = tmp_path / "rep.json"
    rep.save(path)
    back = bg.Report.load(path)
    assert back.layers["0"]["factors"] == rep.layers["0"]["factors"]
    assert back.layers["0"]["kind"] == "event_gru"


def test_calibrate_thresholds_with_last_step_readout():
    torch.manual_seed(1)
    net = nn.Sequential(EventLSTM(3, 8, 4, return_state=False), bg.EventLinear(8, 2, 2))
    xs = (0.3 * torch.randn(12, 200, 3)).cumsum(0)
    with torch.no_grad(), bg.execution(net, "dense"):
        ys = net(xs)[-1].argmax(-1)  # labels the model gets right: a drop is the events' doing
    res = bg.calibrate_thresholds(net, xs, ys, readout="last", tolerance=0.05, max_evals=30)
    assert res.ratio > 1
    assert set(res.thresholds["0"]) == {"threshold", "hidden_threshold", "latent_threshold"}
