"""EventGRU / EventLSTM and their cells against torch, the protocol counters, state handling."""

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from braingate.nn.event_rnn import EventGRU, EventGRUCell, EventLSTM, EventLSTMCell, streaming

from ._nets import naive_delta_rnn, step_all

SEQ = [(EventGRU, nn.GRU, "from_gru"), (EventLSTM, nn.LSTM, "from_lstm")]
CELL = [(EventGRUCell, nn.GRUCell, "from_gru_cell"), (EventLSTMCell, nn.LSTMCell, "from_lstm_cell")]
FULL = 10_000  # capped at every factor's full rank: the SVD reproduces the torch weights


def convert(pair, ref, **kw):
    cls, _, name = pair
    return getattr(cls, name)(ref, FULL, **kw)


@pytest.mark.parametrize("pair", SEQ, ids=["gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("batch_first", [False, True])
def test_dense_equals_torch(pair, layers, batch_first):
    torch.manual_seed(0)
    ref = pair[1](5, 7, num_layers=layers, batch_first=batch_first)
    m = convert(pair, ref)
    xs = torch.randn(4, 9, 5) if batch_first else torch.randn(9, 4, 5)
    h0 = torch.randn(layers, 4, 7)
    hx = h0 if pair[1] is nn.GRU else (h0, torch.randn(layers, 4, 7))
    for args in ((xs,), (xs, hx), (xs[0],)):  # with and without h0, and unbatched
        o_ref, s_ref = ref(*args)
        o, s = m(*args)
        assert o.shape == o_ref.shape
        assert torch.allclose(o, o_ref, atol=1e-5)
        for a, b in zip(s if isinstance(s, tuple) else (s,),
                        s_ref if isinstance(s_ref, tuple) else (s_ref,), strict=True):  # fmt: skip
            assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("pair", CELL, ids=["gru_cell", "lstm_cell"])
def test_cells_dense_equal_torch(pair):
    torch.manual_seed(1)
    ref = pair[1](6, 5)
    m = convert(pair, ref)
    x, h = torch.randn(3, 6), torch.randn(3, 5)
    hx = h if pair[1] is nn.GRUCell else (h, torch.randn(3, 5))
    for args in ((x,), (x, hx), (x[0],)):
        a, b = m(*args), ref(*args)
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,),
                        strict=True):  # fmt: skip
            assert u.shape == v.shape and torch.allclose(u, v, atol=1e-5)


@pytest.mark.parametrize("pair", SEQ, ids=["gru", "lstm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grad", [False, True], ids=["kernel", "reference"])
def test_zero_threshold_event_equals_torch(pair, dtype, grad):
    torch.manual_seed(2)
    ref = pair[1](5, 8, num_layers=2).to(dtype)
    m = convert(pair, ref)
    xs = torch.randn(40, 3, 5, dtype=dtype)
    o_ref, s_ref = ref(xs)
    m.execution = "event"
    with torch.set_grad_enabled(grad):
        outs = step_all(m, xs)
    assert torch.allclose(outs.detach(), o_ref.detach(), atol=1e-5)
    h, _ = m._runner.hidden(m, xs)
    h_ref = s_ref if pair[1] is nn.GRU else s_ref[0]
    assert torch.allclose(h.detach(), h_ref.detach(), atol=1e-5)


@pytest.mark.parametrize("pair", CELL, ids=["gru_cell", "lstm_cell"])
def test_zero_threshold_cell_event_equals_torch_cell(pair):
    torch.manual_seed(3)
    ref = pair[1](4, 6)
    m = convert(pair, ref)
    m.execution = "event"
    h = torch.zeros(2, 6)
    c = torch.zeros(2, 6)
    with torch.no_grad():
        for _ in range(25):
            x = torch.randn(2, 4)
            if pair[1] is nn.GRUCell:
                h = ref(x, h)
                y = m(x)
            else:
                h, c = ref(x, (h, c))
                y, yc = m(x)
                assert torch.allclose(yc, c, atol=1e-5)
            assert torch.allclose(y, h, atol=1e-5)


@pytest.mark.parametrize("pair", SEQ, ids=["gru", "lstm"])
def test_event_chunks_h0_and_batch_first_equal_dense(pair):
    torch.manual_seed(4)
    ref = pair[1](3, 5, num_layers=2, batch_first=True)
    m = convert(pair, ref)
    xs = torch.randn(2, 12, 3)
    h0 = torch.randn(2, 2, 5)
    hx = h0 if pair[1] is nn.GRU else (h0, torch.randn(2, 2, 5))
    o_ref, _ = ref(xs, hx)
    m.execution = "event"
    with torch.no_grad():
        o1, _ = m(xs[:, :5], hx)  # a chunk, with the initial state
        o2, _ = m(xs[:, 5:6])  # a length-1 chunk continues the stream
        o3, _ = m(xs[:, 6])  # one step (B, n)
        o4, _ = m(xs[:, 7:])
    out = torch.cat([o1, o2, o3.unsqueeze(1), o4], dim=1)
    assert out.shape == o_ref.shape
    assert torch.allclose(out, o_ref, atol=1e-5)


def test_torch_style_classifier_steps_with_length_one_chunks():
    """``out, _ = self.gru(xs); return self.head(out[-1])`` fed xs[t:t+1] per step."""
    torch.manual_seed(5)

    class Clf(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = EventGRU(4, 8, rank=8)
            self.head = nn.Linear(8, 3)

        def forward(self, xs):
            out, _ = self.gru(xs)
            return self.head(out[-1])

    model = Clf()
    xs = torch.randn(10, 2, 4)
    dense = torch.stack([model(xs[: t + 1]) for t in range(10)])
    model.gru.execution = "event"
    with torch.no_grad():
        ev = torch.stack([model(xs[t : t + 1]) for t in range(10)])
    assert torch.allclose(ev, dense.detach(), atol=1e-5)


def test_return_state_false_composes_in_sequential():
    torch.manual_seed(6)
    net = nn.Sequential(EventGRU(3, 6, 4, return_state=False), nn.Linear(6, 2))
    xs = torch.randn(7, 2, 3)
    dense = net(xs)
    assert dense.shape == (7, 2, 2)
    net[0].execution = "event"
    with torch.no_grad():
        ev = torch.stack([net(x) for x in xs])
    assert torch.allclose(ev, dense.detach(), atol=1e-5)


def test_streaming_dense_steps_carry_the_hidden_state():
    torch.manual_seed(7)
    m = EventLSTM(3, 4, 3, num_layers=2)
    xs = torch.randn(6, 2, 3)
    full, (h, c) = m(xs)
    with streaming(m):
        steps = torch.stack([m(x)[0] for x in xs])
    assert torch.allclose(steps, full, atol=1e-6)
    assert m.stream is False
    m.reset()
    with streaming(m):
        first, _ = m(xs[0])
    assert torch.allclose(first, full[0], atol=1e-6)  # reset cleared the carried state


@pytest.mark.parametrize("pair", SEQ + CELL, ids=["gru", "lstm", "gru_cell", "lstm_cell"])
def test_counters_equal_independent_recomputation(pair):
    torch.manual_seed(8)
    cls = pair[0]
    kw = {} if cls.is_cell else {"num_layers": 2}
    m = cls(5, 6, (4, 3), threshold=0.15, hidden_threshold=0.05, latent_threshold=0.04,
            dtype=torch.float64, **kw)  # fmt: skip
    xs = (torch.randn(20, 3, 5, dtype=torch.float64) * 0.3).cumsum(0)
    want, counts = naive_delta_rnn(m, xs)
    m.execution = "event"
    G, H = m.gates, m.hidden_size
    with torch.no_grad():
        for t, x in enumerate(xs):
            y = m(x)
            y = y[0] if isinstance(y, tuple) else y
            assert np.allclose(y.numpy(), want[t], atol=1e-9)
            c = m.last_counts
            for k in ("input_events", "latent_events", "synops"):
                assert np.array_equal(getattr(c, k), counts[t][k]), (t, k)
            L = m.num_layers
            assert np.all(c.dense_synops == G * H * (5 + H) + (L - 1) * G * H * 2 * H)
            assert np.all(c.neuron_ops == 3 * H * L)
    # not a trivial stream: some units stay silent, some fire
    sent = sum(c["input_events"].sum() for c in counts)
    assert 0 < sent < 20 * 3 * (5 + 6 + (6 + 6) * (m.num_layers - 1))


def test_dense_counts_and_describe():
    m = EventGRU(6, 8, (4, 8), num_layers=2)
    c = m.dense_counts((6,))
    G, H = 3, 8
    assert c.dense_synops == G * H * (6 + H) + G * H * (H + H)
    # layer 0: input factor rank 4, hidden 8; layer 1 reads h0 (8 wide): ranks (4, 8) again
    assert c.synops == c.lowrank_ops == (6 + G * H) * 4 + (H + G * H) * (8 + 4 + 8)
    assert c.input_events == 6 + H + H + H
    assert c.neuron_ops == 3 * H * 2
    d = m.describe()
    assert d["rank"] == m.latent_size == 4 + 8 + 4 + 8
    assert [f["source"] for f in d["factors"]] == ["input", "h0", "h0", "h1"]
    ins, lat = m.unit_events()
    assert ins.shape == (6 + H + H + H,) and lat.shape == (m.latent_size,)


def test_ranks_capped_pairs_and_approx_error():
    ref = nn.GRU(4, 10)
    m = EventGRU.from_gru(ref, 6)
    assert m.ranks == ((4, 6),)  # input factor capped at its full rank 4
    assert m.approx_errors["ih_l0"] == pytest.approx(0.0, abs=1e-6)
    assert 0 < m.approx_errors["hh_l0"] < 1 and m.approx_error == m.approx_errors["hh_l0"]
    with pytest.raises(ValueError, match="not divisible by blocks=4"):
        EventGRU(6, 10, 6, blocks=4)
    m2 = EventGRU(6, 10, (4, 8), blocks=4)
    assert m2.ranks == ((4, 8),)


def test_kernel_and_reference_agree_with_thresholds_and_gate_changes():
    torch.manual_seed(9)
    kw = {"num_layers": 2, "blocks": 2, "threshold": 0.2, "hidden_threshold": 0.05,
          "latent_threshold": 0.03, "dtype": torch.float64}  # fmt: skip
    a, b = EventLSTM(6, 6, 4, **kw), EventLSTM(6, 6, 4, **kw)
    b.load_state_dict(a.state_dict())
    a.execution = b.execution = "event"
    x = torch.zeros(3, 6, dtype=torch.float64)
    for t in range(30):
        x = x + 0.2 * torch.randn_like(x)
        if t == 12:
            for m in (a, b):
                m.set_active_blocks(torch.tensor([[True, False], [False, True], [True, True]]))
        if t == 22:
            for m in (a, b):
                m.set_active_blocks(1)
        with torch.no_grad():
            ya, _ = a(x)  # compiled kernel
        yb, _ = b(x)  # torch reference (autograd on)
        assert torch.allclose(ya, yb.detach(), atol=1e-9)
        assert all(np.array_equal(u, v) for u, v in zip(a.last_counts, b.last_counts, strict=True))
    assert a.last_counts.gate_ops.sum() >= 0
    for u, v in zip(a.unit_events(), b.unit_events(), strict=True):
        assert np.array_equal(u, v)


def test_periodic_resync_keeps_long_float32_streams_exact():
    torch.manual_seed(10)
    ref = nn.GRU(4, 16)
    m = EventGRU.from_gru(ref, FULL, resync_every=50)
    xs = torch.randn(300, 1, 4)
    o_ref, _ = ref(xs)
    m.execution = "event"
    resynced = 0
    with torch.no_grad():
        for t, x in enumerate(xs):
            y, _ = m(x)
            resynced += int(m.last_counts.resync_ops.sum() > 0)
            assert torch.allclose(y, o_ref[t], atol=1e-5)
    assert resynced == 6 and m._runner.resync_ops > 0


def test_parameter_change_mid_stream_is_noticed():
    torch.manual_seed(11)
    ref = nn.GRU(3, 5)
    m = EventGRU.from_gru(ref, FULL)
    xs = torch.randn(10, 2, 3)
    m.execution = "event"
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    with torch.no_grad():
        for x in xs[:5]:
            m(x)
    m.zero_grad()
    with torch.enable_grad():
        loss = sum(p.sum() for p in m.parameters())
        loss.backward()
    opt.step()
    h_mid = m._runner.hidden(m, xs)[0]
    with torch.no_grad():
        got = torch.stack([m(x)[0] for x in xs[5:]])
        m.execution = "dense"
        want, _ = m(xs[5:], h_mid)
    assert torch.allclose(got, want, atol=1e-5)


def test_state_dict_round_trip_keeps_thresholds_gates_and_mode():
    m = EventGRU(4, 6, (4, 4), num_layers=2, blocks=2, threshold=0.1,
                 hidden_threshold=torch.linspace(0.01, 0.1, 12), latent_threshold=0.02)  # fmt: skip
    m.set_active_blocks(1)
    m.execution = "event"
    m.learn_thresholds(per_unit=False)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    n = EventGRU(4, 6, (4, 4), num_layers=2, blocks=2)
    n.load_state_dict(torch.load(io.BytesIO(buf.getvalue()), weights_only=False))
    assert n.execution == "event"
    for k in n.threshold_names:
        assert torch.allclose(torch.as_tensor(getattr(n, k)), torch.as_tensor(getattr(m, k)))
    assert all(torch.equal(a, b) for a, b in zip(n._gates, m._gates, strict=True))
    xs = torch.randn(5, 2, 4).cumsum(0)
    with torch.no_grad():
        assert torch.allclose(step_all(m, xs), step_all(n, xs))


def test_learned_thresholds_get_surrogate_gradients_through_counts():
    torch.manual_seed(12)
    m = EventGRU(4, 6, 4, threshold=0.1, hidden_threshold=0.05, latent_threshold=0.05)
    m.learn_thresholds()
    xs = torch.randn(8, 3, 4).cumsum(0) * 0.2
    state = m.init_state(3, xs)
    syn = 0
    for x in xs:
        _, state, c = m.reference_step(x, state)
        syn = syn + c.synops.sum()
    syn.backward()
    for name in m.threshold_names:
        g = getattr(m, name + "_raw").grad
        assert g is not None and float(g.abs().sum()) > 0, name


def test_module_forward_under_autograd_trains_through_events():
    torch.manual_seed(13)
    m = EventGRU(3, 5, 3, threshold=0.05, hidden_threshold=0.05, latent_threshold=0.02)
    m.learn_thresholds()
    m.execution = "event"
    xs = torch.randn(6, 2, 3)
    out = step_all(m, xs)
    out.pow(2).sum().backward()
    assert m.U_hh_l0.grad is not None and float(m.U_hh_l0.grad.abs().sum()) > 0
    assert m.latent_threshold_raw.grad is not None


def test_batch_change_mid_stream_raises_and_keeps_state():
    m = EventGRU(3, 4, 3)
    m.execution = "event"
    with torch.no_grad():
        m(torch.randn(2, 3))
        before = m._runner.hidden(m, torch.zeros(1))[0].clone()
        with pytest.raises(ValueError, match="batch size changed from 2 to 3"):
            m(torch.randn(3, 3))
        assert torch.equal(m._runner.hidden(m, torch.zeros(1))[0], before)
        m.reset()
        assert m(torch.randn(3, 3))[0].shape == (3, 4)


def test_copies_and_pickles_step_independently():
    torch.manual_seed(14)
    m = EventLSTM(3, 4, 3, threshold=0.01)
    m.execution = "event"
    xs = torch.randn(8, 2, 3)
    with torch.no_grad():
        for x in xs[:4]:
            m(x)
        twins = [copy.deepcopy(m), pickle.loads(pickle.dumps(m))]
        want = step_all(m, xs[4:])
        for t in twins:
            assert torch.allclose(step_all(t, xs[4:]), want)


@pytest.mark.parametrize("pair", SEQ + CELL, ids=["gru", "lstm", "gru_cell", "lstm_cell"])
def test_format_step_returns_what_an_event_call_returns(pair):
    torch.manual_seed(15)
    cls = pair[0]
    m = cls(3, 4, 2)
    x = torch.randn(2, 3)
    y, state, _ = m.reference_step(x, m.init_state(2, x))
    m.execution = "event"
    want = m(x)
    got = m.format_step(y, state)
    flat = lambda v: [v] if isinstance(v, torch.Tensor) else [t for u in v for t in flat(u)]  # noqa: E731
    assert len(flat(got)) == len(flat(want))
    for a, b in zip(flat(got), flat(want), strict=True):
        assert a.shape == b.shape and torch.allclose(a.detach(), b.detach(), atol=1e-6)
