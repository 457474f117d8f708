"""Changes between steps of a running stream: weights, thresholds, bad input, and the lean path.

Module stepping takes a lean path once a stream is steady (``EventRunner.hot_step``); these
tests change things behind it and check against the dense path or the torch reference.
"""

import pytest
import torch
from torch import nn

import braingate as bg


def dense_out(layer: bg.EventLinear, x: torch.Tensor) -> torch.Tensor:
    mode = layer.execution
    layer.execution = "dense"
    y = layer(x)
    layer.execution = mode
    return y


def edit(layer: bg.EventLinear, t: int) -> None:
    with torch.no_grad():
        if t == 5:
            layer.U.mul_(0.5)  # in place: only the version counter changes
        if t == 9:
            layer.s.add_(0.3)
        if t == 13:
            layer.V = nn.Parameter(layer.V.detach().flip(0))  # a replaced factor
        if t == 17:
            layer.bias.add_(1.0)


@pytest.mark.parametrize("mode", ["event", "auto", "chain", "torch"])
def test_weight_changes_mid_stream_keep_the_event_path_exact(mode):
    """θ = θz = 0: after every kind of weight change the event output equals the dense one."""
    torch.manual_seed(0)
    layer = bg.EventLinear(16, 12, 8, blocks=2, dtype=torch.float64)
    layer.execution = "auto" if mode == "auto" else "event"
    step = bg.sim.compile_events(layer) if mode == "chain" else layer
    xs = torch.randn(22, 3, 16, dtype=torch.float64).cumsum(0)
    with torch.set_grad_enabled(mode == "torch"):
        for t in range(22):
            edit(layer, t)
            y = step(xs[t])
            torch.testing.assert_close(y, dense_out(layer, xs[t]), rtol=1e-9, atol=1e-9)
    assert layer._runner.resync_ops > 0  # the changes were absorbed by re-syncs


def test_bound_holds_right_after_a_weight_change():
    torch.manual_seed(1)
    layer = bg.EventLinear(20, 10, 6, threshold=0.2, latent_threshold=0.1)
    layer.execution = "event"
    xs = torch.randn(30, 2, 20).cumsum(0) * 0.5
    with torch.no_grad():
        for t in range(30):
            if t in (8, 19):
                layer.U.mul_(1.5)
                layer.V.mul_(-1.0)
            y = layer(xs[t])
            W = layer.dense_weight()
            U = layer.U * layer.s
            bound = 0.2 * W.abs().sum(1).max() + 0.1 * U.abs().sum(1).max()
            err = (y - dense_out(layer, xs[t])).abs().max()
            assert err <= bound + 1e-5, (t, float(err), float(bound))


def test_lean_path_matches_the_torch_reference_step_by_step():
    torch.manual_seed(2)
    xs = torch.randn(40, 2, 24).cumsum(0) * 0.4
    a = bg.EventLinear(24, 16, 8, blocks=2, threshold=0.3, latent_threshold=0.2)
    b = bg.EventLinear(24, 16, 8, blocks=2, threshold=0.3, latent_threshold=0.2)
    b.load_state_dict(a.state_dict())
    a.execution = b.execution = "event"
    for t in range(40):
        with torch.no_grad():
            ya = a(xs[t])
        yb = b(xs[t])  # autograd on: the torch reference path
        torch.testing.assert_close(ya, yb.detach(), rtol=1e-5, atol=1e-5)
        assert (a._runner.last_counts == b._runner.last_counts).all(), t
    assert a._runner._hot is not None  # the stream did run on the lean path


@pytest.mark.parametrize(
    ("bad", "exc", "match"),
    [
        (torch.randn(2, 7), ValueError, "in_features=10"),
        (torch.randn(2, 10, dtype=torch.float64), TypeError, "dtype"),
        (torch.randn(3, 10), ValueError, "batch size changed"),
        ([[0.0] * 10] * 2, TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_on_a_steady_stream_raises_and_leaves_state(bad, exc, match):
    layer = bg.EventLinear(10, 6, 4, threshold=0.1)
    layer.execution = "event"
    with torch.no_grad():
        for _ in range(4):
            layer(torch.randn(2, 10))
        before = [t.clone() for t in layer._runner.state]
        steps = layer._runner.steps
        with pytest.raises(exc, match=match):
            layer(bad)
    assert layer._runner.steps == steps
    for old, new in zip(before, layer._runner.state):
        assert torch.equal(old, new)


def test_threshold_edits_in_place_reach_the_lean_path():
    torch.manual_seed(3)
    xs = torch.randn(12, 1, 10).cumsum(0) * 0.3
    a, b = bg.EventLinear(10, 8, 4), bg.EventLinear(10, 8, 4)
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.execution = "event"
        m.threshold = torch.full((10,), 0.1)
    for t in range(12):
        if t == 6:
            a.threshold.mul_(8.0)  # in place: no setter runs
            b.threshold = torch.full((10,), 0.8)
        with torch.no_grad():
            assert torch.equal(a(xs[t]), b(xs[t])), t


def test_auto_mode_switching_back_and_forth_stays_exact():
    """Forced switches (a cost model swapped every few steps) between the lean dense and event
    steps and the checked ones: the output equals the dense path at θ = θz = 0 throughout."""
    from braingate.functional.cost import CostModel, current_cost_model, set_cost_model

    always_dense = CostModel(1.0, 0.0, 0.0, 0.0, 0.0, device="test")
    always_event = CostModel(0.0, 0.0, 0.0, 1.0, 0.0, device="test")
    torch.manual_seed(4)
    layer = bg.EventLinear(20, 12, 8, blocks=2)
    layer.execution = "auto"
    xs = torch.randn(40, 3, 20).cumsum(0)
    installed = current_cost_model("cpu")
    paths = []
    try:
        with torch.no_grad():
            for t in range(40):
                set_cost_model("cpu", always_dense if (t // 5) % 2 else always_event)
                y = layer(xs[t])
                paths.append("D" if layer._runner._mark is not None else "E")
                torch.testing.assert_close(y, dense_out(layer, xs[t]), rtol=1e-5, atol=1e-5)
    finally:
        set_cost_model("cpu", installed)
    assert "".join(paths).count("DE") >= 3 and "".join(paths).count("ED") >= 3
