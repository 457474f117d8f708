"""Bad input raises ValueError/TypeError naming the argument, the value and the fix."""

import pytest
import torch

import braingate as bg


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"rank": 9},
            ValueError,
            r"rank=9 exceeds min\(in_features, out_features\)=8; pass rank<=8",
        ),
        ({"rank": 6, "blocks": 4}, ValueError, r"rank=6 is not divisible by blocks=4"),
        ({"rank": 0}, ValueError, r"rank=0 must be positive"),
        ({"rank": -2}, ValueError, r"rank=-2 must be positive"),
        ({"rank": 2.5}, TypeError, r"rank must be an int"),
        ({"rank": 4, "threshold": -0.1}, ValueError, r"threshold=-0.1 must be finite and >= 0"),
        ({"rank": 4, "latent_threshold": float("nan")}, ValueError, r"latent_threshold=nan"),
        ({"rank": 4, "resync_every": -1}, ValueError, r"resync_every=-1"),
    ],
)
def test_constructor_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        bg.EventLinear(10, 8, **kwargs)


def test_runtime_errors_leave_state_unchanged():
    layer = bg.EventLinear(10, 8, 4, blocks=2, threshold=0.1)
    layer.execution = "event"
    layer(torch.randn(2, 10))
    state, th = layer._runner.state, layer.threshold
    with pytest.raises(ValueError, match=r"in_features=10; pass \(\.\.\., 10\)"):
        layer(torch.randn(2, 11))
    with pytest.raises(TypeError, match=r"dtype torch.float64 differs.*x.to\(torch.float32\)"):
        layer(torch.randn(2, 10, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"execution='event' takes one time step"):
        layer(torch.randn(3, 2, 10))
    with pytest.raises(ValueError, match=r"execution='fast' is unknown; pass one of"):
        layer.execution = "fast"
    with pytest.raises(ValueError, match=r"threshold=-1.0 must be finite and >= 0"):
        layer.threshold = -1.0
    with pytest.raises(ValueError, match=r"k=3 active blocks is out of range; pass 0 <= k <= 2"):
        layer.set_active_blocks(3)
    with pytest.raises(ValueError, match=r"gate mask has shape \(3,\)"):
        layer.set_active_blocks(torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"gate mask must be a bool tensor"):
        layer.set_active_blocks(torch.ones(2))
    assert layer._runner.state is state and layer.threshold == th and layer.execution == "event"


@pytest.mark.gpu
def test_device_mismatch_with_cuda():
    layer = bg.EventLinear(10, 8, 4)
    with pytest.raises(ValueError, match="move one with"):
        layer(torch.randn(2, 10, device="cuda"))


def test_device_mismatch_message_on_meta_device():
    layer = bg.EventLinear(10, 8, 4)
    with pytest.raises(ValueError, match=r"input is on meta but the layer is on cpu"):
        layer(torch.empty(2, 10, device="meta"))


def test_simulate_and_convert_errors():
    layer = bg.EventLinear(10, 8, 4)
    with pytest.raises(ValueError, match=r"pass a time-first stream \(T, B, \.\.\.\)"):
        bg.simulate(layer, torch.randn(10))
    with pytest.raises(ValueError, match=r"execution='slow' is unknown"):
        bg.simulate(layer, torch.randn(3, 2, 10), mode="slow")
    with pytest.raises(TypeError, match="xs must be a torch.Tensor"):
        bg.simulate(layer, [[1.0]])
    with pytest.raises(ValueError, match=r"targets='nope' matched no nn.Linear"):
        bg.convert(torch.nn.Sequential(torch.nn.Linear(4, 4)), rank=2, targets="nope")
    with pytest.raises(ValueError, match=r"rank=1.5 as a fraction must be in \(0, 1\]"):
        bg.convert(torch.nn.Sequential(torch.nn.Linear(4, 4)), rank=1.5)


@pytest.mark.parametrize("compiled", [False, True])
def test_sparse_meta_and_empty_inputs_on_a_steady_stream(compiled):
    """Inputs the compiled step must never see get the module path's clear error, mid-stream,
    and the stream goes on as if they had not been passed."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(bg.EventLinear(10, 8, 4, threshold=0.05), torch.nn.ReLU())
    bg.execution(net, "event")
    step = bg.sim.compile_events(net) if compiled else net
    xs = torch.randn(6, 2, 10).cumsum(0)
    with torch.no_grad():
        ref = [net(x) for x in xs]
        bg.reset(net)
        for t, x in enumerate(xs):
            if t == 3:
                bad_inputs = [
                    (x.to_sparse(), TypeError, r"layout torch.sparse_coo.*x.to_dense\(\)"),
                    (torch.empty(2, 10, device="meta"), ValueError, r"input is on meta"),
                    (torch.empty(0, 10), ValueError, r"shape \(0, 10\): no samples"),
                ]
                for bad, exc, match in bad_inputs:
                    with pytest.raises(exc, match=match):
                        step(bad)
            assert torch.equal(step(x), ref[t]), t
