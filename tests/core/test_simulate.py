"""simulate(), Report, reset() and execution() over whole models."""

import pytest
import snntorch as snn
import torch
from torch import nn

import braingate as bg


def make_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 5))
    return bg.convert(net, rank=4, threshold=0.05, latent_threshold=0.01)


def test_event_and_dense_simulations_agree_at_zero_threshold():
    net = make_net()
    for m in net:
        if isinstance(m, bg.EventLinear):
            m.threshold = m.latent_threshold = 0.0
    xs = torch.randn(15, 3, 12).cumsum(0)
    ye, rep_e = bg.simulate(net, xs, mode="event")
    yd, rep_d = bg.simulate(net, xs, mode="dense")
    ya, rep_a = bg.simulate(net, xs, mode="auto")
    assert torch.allclose(ye, yd, atol=1e-4) and torch.allclose(ya, yd, atol=1e-4)
    assert rep_d.total["synops"] == rep_d.total["lowrank_ops"]
    assert set(rep_e.layers) == {"0", "2"} and rep_e.meta == {
        "steps": 15,
        "batch": 3,
        "mode": "event",
    }
    assert len(rep_e.layers["0"]["input_unit_events"]) == 12
    assert len(rep_e.layers["0"]["latent_unit_events"]) == 4
    # per-unit events add up to the layer's input events
    assert (
        abs(sum(rep_e.layers["0"]["input_unit_events"]) - rep_e.layers["0"]["input_events"]) < 1e-6
    )


def test_thresholds_skip_work_on_a_slow_stream():
    net = make_net()
    xs = (torch.randn(40, 2, 12) * 0.02).cumsum(0)
    _, rep = bg.simulate(net, xs)
    assert rep.total["synops"] < 0.5 * rep.total["lowrank_ops"]
    assert "dense/synops" in rep.summary()


def test_plain_linear_counts_nonzero_inputs_like_neurobench():
    lin = nn.Linear(6, 4)
    xs = torch.zeros(3, 2, 6)
    xs[:, 0, :2] = 1.0  # sample 0: 2 nonzero inputs, sample 1: none
    _, rep = bg.simulate(nn.Sequential(lin), xs, mode="dense")
    assert rep.total["synops"] == 3 * (2 + 0) / 2 * 4
    assert rep.total["dense_synops"] == 3 * 6 * 4


def test_report_save_load_round_trip(tmp_path):
    net = make_net()
    _, rep = bg.simulate(net, torch.randn(5, 2, 12))
    path = rep.save(tmp_path / "r.json")
    assert bg.Report.load(path) == rep
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid report JSON"):
        bg.Report.load(tmp_path / "bad.json")


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(bg.EventLinear(8, 8, 4), snn.Leaky(beta=0.9, init_hidden=True))
        self.head = nn.ModuleDict({"out": bg.EventLinear(8, 3, 2)})

    def forward(self, x):
        return self.head["out"](self.block(x))


def test_reset_reaches_nested_layers_and_only_this_models_snntorch_neurons():
    a, b = Nested(), Nested()
    with bg.execution(a, "event"):
        a(torch.randn(2, 8))
        b(torch.randn(2, 8))
        assert a.block[0]._runner.state is not None
        bg.reset(a)
        assert a.block[0]._runner.state is None and a.head["out"]._runner.state is None
        assert float(a.block[1].mem.abs().sum()) == 0.0
        assert float(b.block[1].mem.abs().sum()) > 0.0  # the other network is untouched
    assert a.block[0].execution == "dense"  # restored by the context manager


def test_snntorch_network_simulates_stepwise_in_dense_mode():
    net = Nested()
    xs = torch.rand(6, 2, 8)
    ys, rep = bg.simulate(net, xs, mode="dense")
    ye, _ = bg.simulate(net, xs, mode="event")
    assert ys.shape == (6, 2, 3) and torch.allclose(ys, ye, atol=1e-5)
    assert rep.meta["steps"] == 6


def test_execution_applies_without_with():
    net = make_net()
    bg.execution(net, "event")
    assert net[0].execution == "event" and net[2].execution == "event"


def test_calibrate_returns_a_positive_cost_model():
    cm = bg.calibrate()
    assert cm.dense_time(1, 256, 256, 32) > 0 and cm.event_time(1, 256, 2000) > 0
    assert bg.calibrate() is cm  # cached


@pytest.mark.gpu
def test_gpu_dense_fallback_matches_cpu_in_dense_and_event_modes():
    net = make_net()
    xs = torch.randn(10, 4, 12)
    y_cpu, _ = bg.simulate(net, xs, mode="dense")
    y_gpu, _ = bg.simulate(net.cuda(), xs.cuda(), mode="dense")
    assert torch.allclose(y_cpu, y_gpu.cpu(), atol=1e-4)
    y_ev, rep = bg.simulate(net, xs.cuda(), mode="event")  # torch reference path on CUDA
    assert y_ev.is_cuda and rep.total["synops"] > 0
