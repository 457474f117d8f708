"""Changes between steps of a running stream: weights, thresholds, bad input, and the lean path.

Module stepping takes a lean path once a stream is steady (``EventRunner.hot_step``); these
tests change things behind it and check against the dense path or the torch reference.
"""

import numpy as np
import pytest
import torch
from torch import nn

import braingate as bg

from ._helpers import dense_out


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


def test_a_copy_taken_mid_stream_continues_like_the_original():
    import copy
    import pickle

    torch.manual_seed(5)
    xs = torch.randn(16, 2, 12).cumsum(0) * 0.4
    layer = bg.EventLinear(12, 8, 4, threshold=0.2, latent_threshold=0.1)
    layer.execution = "event"
    with torch.no_grad():
        for t in range(8):
            layer(xs[t])
        twin = copy.deepcopy(layer)
        thawed = pickle.loads(pickle.dumps(layer))
        for t in range(8, 16):
            y = layer(xs[t])
            torch.testing.assert_close(twin(xs[t]), y, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(thawed(xs[t]), y, rtol=1e-6, atol=1e-6)
    for a, b in zip(layer._runner.state, twin._runner.state):  # the copy's state tensors moved
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def _net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(bg.EventLinear(10, 12, 6, blocks=2, threshold=0.05), nn.ReLU(),
                        bg.EventLinear(12, 4, 4, blocks=2, threshold=0.05))  # fmt: skip
    bg.execution(net, "event")
    return net


@pytest.mark.parametrize("fused", [False, True], ids=["module", "chain"])
def test_reset_starts_a_stream_like_a_new_network(fused):
    """In-place reset: new batch size, gate changed before the first step, same output and
    counters as a never-used copy; a batch change after the first step is an error again."""
    net, fresh = _net(0), _net(0)
    step = bg.sim.compile_events(net) if fused else net
    xs = torch.randn(6, 2, 10).cumsum(0)
    with torch.no_grad():
        for t in range(6):
            step(xs[t])
        bg.reset(net)
        net[2].set_active_blocks(1)
        fresh[2].set_active_blocks(1)
        ys = torch.randn(5, 3, 10).cumsum(0)  # batch 3 after batch 2
        for t in range(5):
            torch.testing.assert_close(step(ys[t]), fresh(ys[t]), rtol=1e-6, atol=1e-6)
            for a, b in ((net[0], fresh[0]), (net[2], fresh[2])):
                np.testing.assert_array_equal(a._runner.last_counts, b._runner.last_counts)
        with pytest.raises(ValueError, match="batch size changed"):
            net(torch.randn(2, 10))


def test_gate_change_mid_stream_after_a_reset_is_processed_by_the_chain():
    """The first chain step after a reset ends the layers' fresh state: a later gate change is
    an event again (θ = θz = 0: the output equals the dense path)."""
    torch.manual_seed(1)
    net = nn.Sequential(bg.EventLinear(10, 8, 4, blocks=2))
    bg.execution(net, "event")
    chain = bg.sim.compile_events(net)
    xs = torch.randn(8, 1, 10).cumsum(0)
    with torch.no_grad():
        chain(xs[0])
        bg.reset(net)
        for t in range(1, 8):
            if t == 4:
                net[0].set_active_blocks(1)
            y = chain(xs[t])
            torch.testing.assert_close(y, dense_out(net[0], xs[t]), rtol=1e-5, atol=1e-5)


def test_reset_on_the_autograd_graph_drops_the_state():
    layer = bg.EventLinear(6, 4, 2, threshold=0.1)
    layer.execution = "event"
    y = layer(torch.randn(1, 6))  # autograd on: the torch path, state on the graph
    layer.reset()
    assert layer._runner.state is None
    y.sum().backward()  # the old graph is intact
    assert layer.U.grad is not None


def test_reset_with_a_per_sample_gate_for_another_batch():
    torch.manual_seed(2)
    layer, fresh = bg.EventLinear(8, 6, 4, blocks=2), bg.EventLinear(8, 6, 4, blocks=2)
    fresh.load_state_dict(layer.state_dict())
    layer.execution = fresh.execution = "event"
    with torch.no_grad():
        layer(torch.randn(2, 8))
        mask = torch.tensor([[True, False]])  # one sample
        layer.set_active_blocks(mask)
        fresh.set_active_blocks(mask)
        layer.reset()
        x = torch.randn(1, 8)
        torch.testing.assert_close(layer(x), fresh(x))
        np.testing.assert_array_equal(layer._runner.last_counts, fresh._runner.last_counts)
