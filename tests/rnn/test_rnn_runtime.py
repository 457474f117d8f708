"""The compiled ``delta_rnn`` op: against the torch reference, inside compiled chains."""

import numpy as np
import pytest
import torch
from torch import nn

import braingate as bg
from braingate.functional._kernels import AVAILABLE
from braingate.nn.event_rnn import EventGRU, EventLSTM
from braingate.runtime import OPS, fuser_for
from braingate.sim.fused import compile_events

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="needs numba")


def _net(cls, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    rnn = cls(5, 8, (4, 6), num_layers=2, threshold=0.1, hidden_threshold=0.04,
              latent_threshold=0.02, return_state=False, dtype=dtype, **kw)  # fmt: skip
    head = bg.EventLinear(8, 3, 3, threshold=0.05, latent_threshold=0.01, dtype=dtype)
    net = nn.Sequential(rnn, nn.ReLU(), head)
    for m in (rnn, head):
        m.execution = "event"
    return net


def _stream(T=40, B=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return (0.3 * torch.randn(T, B, 5, generator=g, dtype=dtype)).cumsum(0)


def test_op_and_fuser_are_registered():
    assert "delta_rnn" in OPS
    assert fuser_for(EventGRU(2, 2, 1)) is fuser_for(EventLSTM(2, 2, 1)) is not None


@pytest.mark.parametrize("cls", [EventGRU, EventLSTM])
def test_chain_equals_module_stepping_and_the_torch_reference(cls):
    net = _net(cls)
    xs = _stream()
    chain = compile_events(net)
    with torch.no_grad():
        ys = torch.stack([chain(x) for x in xs])
        counts = net[0].last_counts
        units = net[0].unit_events()
    assert chain.compiled_segments == 1  # GRU, ReLU and the head in one compiled call
    bg.reset(net)
    ref = torch.stack([net(x) for x in xs])  # autograd on: the torch reference path
    assert torch.allclose(ys, ref.detach(), atol=1e-9)
    for a, b in zip(counts, net[0].last_counts, strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(units, net[0].unit_events(), strict=True):
        assert np.array_equal(a, b)


def test_chain_reset_restarts_the_stream_in_place():
    net = _net(EventGRU)
    xs = _stream()
    chain = compile_events(net)
    with torch.no_grad():
        first = torch.stack([chain(x) for x in xs])
        chain.reset()
        second = torch.stack([chain(x) for x in xs])
        bg.reset(net)  # the module path's reset, then the chain again
        third = torch.stack([chain(x) for x in xs])
    assert torch.equal(first, second) and torch.equal(first, third)


def test_chain_notices_an_optimizer_step_and_a_threshold_change():
    net = _net(EventGRU)
    rnn = net[0]
    rnn.threshold = rnn.hidden_threshold = rnn.latent_threshold = 0.0
    net[2].threshold = net[2].latent_threshold = 0.0
    xs = _stream()
    chain = compile_events(net)
    opt = torch.optim.SGD(rnn.parameters(), lr=0.1)
    with torch.no_grad():
        for x in xs[:10]:
            chain(x)
    h_mid = rnn._runner.hidden(rnn, xs)[0]
    (sum(p.sum() for p in rnn.parameters())).backward()
    opt.step()
    with torch.no_grad():
        got = torch.stack([chain(x) for x in xs[10:]])
        with bg.execution(net, "dense"):
            rnn.return_state = True
            out, _ = rnn(xs[10:], h_mid)
            want = net[2](net[1](out))
    assert torch.allclose(got, want, atol=1e-9)
    rnn.threshold = 50.0  # an epoch change: the next step reads the new threshold
    before = rnn.unit_events()[0][:5].copy()
    with torch.no_grad():
        chain(xs[-1] + 1.0)
    assert np.array_equal(rnn.unit_events()[0][:5], before)  # no input unit sent


def test_chain_resyncs_like_the_module_path():
    net = _net(EventLSTM, resync_every=7)
    xs = _stream(T=30)
    chain = compile_events(net)
    with torch.no_grad():
        ys = torch.stack([chain(x) for x in xs])
        ops = net[0]._runner.resync_ops
        bg.reset(net)
        ref = torch.stack([net(x) for x in xs])
    assert ops > 0 and ops == net[0]._runner.resync_ops
    assert torch.allclose(ys, ref, atol=1e-12)


def test_chain_with_lif_in_float32():
    torch.manual_seed(2)
    rnn = EventGRU(5, 8, 4, threshold=0.05, return_state=False)
    head = bg.EventLinear(8, 8, 4)
    net = nn.Sequential(rnn, head, bg.LIF(8, beta=0.8, threshold=0.3))
    for m in (rnn, head):
        m.execution = "event"
    xs = _stream(dtype=torch.float32)
    chain = compile_events(net)
    with torch.no_grad():
        ys = torch.stack([chain(x) for x in xs])
        bg.reset(net)
        ref = torch.stack([net(x) for x in xs])
    assert chain.compiled_segments == 1
    assert torch.equal(ys, ref) and ys.sum() > 0


def test_not_lowered_outside_event_mode_or_on_another_width():
    rnn = EventGRU(5, 8, 4, return_state=False)
    assert "execution='dense'" in fuser_for(rnn)(rnn, 1, torch.float32, (5,))
    rnn.execution = "event"
    assert "takes (5,)" in fuser_for(rnn)(rnn, 1, torch.float32, (6,))
    assert "float64" in fuser_for(rnn)(rnn, 1, torch.float64, (5,))


def test_vectorised_float32_sigmoid_is_accurate():
    from braingate.runtime.rnn import _sigmoid_f32

    v = np.linspace(-100, 100, 400_001).astype(np.float32)
    out = v.copy()
    _sigmoid_f32(out, np.empty(v.size, np.int32), 0, v.size)
    exact = 1 / (1 + np.exp(-v.astype(np.float64)))
    assert np.abs(out - exact).max() < 2e-7


def test_a_row_of_another_layout_is_refused_before_any_read():
    """A kernel from a stale on-disk cache compiled for other columns must not read the row."""
    m = EventGRU(3, 4, 2)
    m.execution = "event"
    x = torch.randn(1, 3)
    with torch.no_grad():
        m(x)
    r = m._runner
    desc = r.desc.copy()
    desc[0, 2] += 1  # the layout fingerprint column
    with pytest.raises(RuntimeError, match="another row layout"):
        r.step_fn(x.data_ptr(), 1, desc, np.zeros(1, np.float32), np.zeros(1, np.bool_))
