"""Recurrent models as a torch user writes them, converted and run through simulate.

A model written for torch's recurrent call (``out, _ = self.gru(x); return self.head(out[-1])``,
a cell loop) is fed length-1 sequences by simulate, so at every step its output is what the
torch model returns for the stream so far; braingate-style ``nn.Sequential`` models keep being
stepped with ``xs[t]``, and a dense-mode stepped model carries its recurrent state.
"""

import copy
import warnings

import pytest
import torch
from torch import nn

import braingate as bg
from braingate.nn.event_rnn import EventGRU

T, B, N, H = 6, 3, 5, 8


def _stream(seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.3 * torch.randn(T, B, N, generator=g)).cumsum(0)


class _Head(nn.Module):
    """``nn.GRU`` / ``nn.LSTM`` then a Linear head on the last step (torch's idiom)."""

    def __init__(self, kind="gru", batch_first=False, layers=1):
        super().__init__()
        cls = nn.GRU if kind == "gru" else nn.LSTM
        self.rnn = cls(N, H, num_layers=layers, batch_first=batch_first)
        self.head = nn.Linear(H, 4)
        self.batch_first = batch_first

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1] if self.batch_first else out[-1])


class _CellLoop(nn.Module):
    def __init__(self, kind="gru"):
        super().__init__()
        self.cell = nn.GRUCell(N, H) if kind == "gru" else nn.LSTMCell(N, H)
        self.head = nn.Linear(H, 4)

    def forward(self, xs):
        h = None
        for x in xs:
            h = self.cell(x, h)
        return self.head(h[0] if isinstance(h, tuple) else h)


def _converted(ref):
    net = copy.deepcopy(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg.convert(net, rank=1.0)
    return net


@pytest.mark.parametrize("mode", ["event", "dense", "auto"])
@pytest.mark.parametrize(
    "kind,batch_first,layers",
    [("gru", False, 1), ("lstm", False, 2), ("gru", True, 2), ("lstm", True, 1)],
)
def test_torch_style_recurrent_model_steps_like_torch(kind, batch_first, layers, mode):
    torch.manual_seed(0)
    ref = _Head(kind, batch_first, layers).eval()
    xs = _stream()
    net = _converted(ref)
    ys, rep = bg.simulate(net, xs, mode=mode)
    assert ys.shape == (T, B, 4)
    with torch.no_grad():
        for t in (0, 2, T - 1):  # ys[t] is the torch model on the stream so far
            prefix = xs[: t + 1]
            want = ref(prefix.transpose(0, 1) if batch_first else prefix)
            torch.testing.assert_close(ys[t], want, rtol=1e-5, atol=1e-5)
    assert len(rep.trace["rnn"]["synops"]) == T
    assert rep.total["synops"] > 0


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_cell_loop_model_steps_like_torch(kind):
    torch.manual_seed(0)
    ref = _CellLoop(kind).eval()
    xs = _stream(1)
    net = _converted(ref)
    ys, _ = bg.simulate(net, xs, mode="event")
    with torch.no_grad():
        torch.testing.assert_close(ys[-1], ref(xs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("neuron", ["lif", "snntorch"])
def test_dense_mode_stepped_model_carries_the_recurrent_state(neuron):
    """A model with stateful neurons is stepped in time in dense mode; its EventGRU must carry
    its hidden state (it used to read each (B, n) step as an unbatched sequence of length B)."""
    torch.manual_seed(0)
    if neuron == "lif":
        spk = bg.LIF(4, beta=0.9)
    else:
        snn = pytest.importorskip("snntorch")
        spk = snn.Leaky(beta=0.9, init_hidden=True)
    net = nn.Sequential(EventGRU(N, H, 4, return_state=False), bg.EventLinear(H, 4, 4), spk)
    xs = _stream(2)
    ye, _ = bg.simulate(net, xs, mode="event")
    yd, _ = bg.simulate(net, xs, mode="dense")
    assert ye.abs().sum() > 0  # some spikes, so the comparison says something
    torch.testing.assert_close(yd, ye)


@pytest.mark.parametrize("batch_first", [False, True])
def test_dense_mode_on_a_plain_torch_rnn_returns_its_output(batch_first):
    torch.manual_seed(0)
    gru = nn.GRU(N, H, batch_first=batch_first)
    xs = _stream(3)
    ys, rep = bg.simulate(gru, xs, mode="dense")  # was: AttributeError on torch's (out, h_n)
    with torch.no_grad():
        want, _ = gru(xs.transpose(0, 1) if batch_first else xs)
    if batch_first:
        want = want.transpose(0, 1)
    torch.testing.assert_close(ys, want)
    assert rep.meta["steps"] == T


def test_mixed_batch_first_is_refused_with_the_fix():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.GRU(N, H)
            self.b = nn.GRU(H, H, batch_first=True)

        def forward(self, x):
            return self.b(self.a(x)[0].transpose(0, 1))[0]

    net = _converted(Two())
    with pytest.raises(ValueError, match="batch_first"):
        bg.simulate(net, _stream(), mode="event")


def test_a_step_that_returns_no_tensor_is_refused_clearly():
    class Dict(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = bg.EventLinear(N, 3, 3)

        def forward(self, x):
            return {"y": self.lin(x)}

    with pytest.raises(TypeError, match="return a tensor"):
        bg.simulate(Dict(), _stream(), mode="event")


class _H0Zeros(_Head):
    """Passes its own zero initial state, as many torch forwards do."""

    def forward(self, x):
        h0 = x.new_zeros(self.rnn.num_layers, x.shape[1], self.rnn.hidden_size)
        out, _ = self.rnn(x, h0)
        return self.head(out[-1])


class _CellLoopZeros(_CellLoop):
    def forward(self, xs):
        h = xs.new_zeros(xs.shape[1], H)
        for x in xs:
            h = self.cell(x, h)
        return self.head(h)


@pytest.mark.parametrize("mode", ["event", "dense"])
@pytest.mark.parametrize("make", [lambda: _H0Zeros("gru", layers=2), lambda: _CellLoopZeros()],
                         ids=["gru_h0", "cell_loop_h0"])  # fmt: skip
def test_an_initial_state_passed_by_the_forward_starts_the_stream_only(make, mode):
    """simulate feeds length-1 sequences; the forward's h0 = zeros at every call would restart
    the hidden state each step (silently wrong by ~0.2 before)."""
    torch.manual_seed(0)
    ref = make().eval()
    xs = _stream(4)
    net = _converted(ref)
    ys, _ = bg.simulate(net, xs, mode=mode)
    with torch.no_grad():
        for t in (1, T - 1):
            torch.testing.assert_close(ys[t], ref(xs[: t + 1]), rtol=1e-5, atol=1e-5)
    # outside simulate the module keeps honouring hx at every call
    gru = next(m for m in net.modules() if isinstance(m, bg.EventModule) and m.recurrent)
    assert not gru.hx_at_start_only and not gru.stream


@pytest.mark.parametrize("kind", [nn.GRU, nn.LSTMCell])
def test_bfloat16_recurrent_models_convert_and_run(kind):
    """Constructing an event RNN in bfloat16 failed in torch's QR ('geqrf_cpu' not implemented
    for 'BFloat16'); it runs on the torch reference path."""
    torch.manual_seed(0)
    net = nn.Sequential(kind(N, H)).to(torch.bfloat16)
    xs = _stream(5).to(torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg.convert(net, rank=1.0)
    assert all(p.dtype == torch.bfloat16 for p in net.parameters())
    ye, _ = bg.simulate(net, xs, mode="event")
    yd, _ = bg.simulate(net, xs, mode="dense")
    assert ye.dtype == torch.bfloat16
    torch.testing.assert_close(ye.float(), yd.float(), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("cls", ["EventGRU", "EventLSTMCell"])
@pytest.mark.parametrize("path", ["kernel", "torch"])
def test_dtype_conversion_mid_stream_continues_the_stream(cls, path):
    """``.double()`` / ``.to()`` mid-stream keeps the state, as EventLinear does (the stream
    silently restarted from zero before)."""
    torch.manual_seed(0)
    layer = getattr(bg, cls)(N, H, 4, threshold=0.02, hidden_threshold=0.02, return_state=False)
    layer.execution = "event"
    xs = _stream(6)
    grad = torch.enable_grad() if path == "torch" else torch.no_grad()  # reference / kernel
    with grad:
        want = torch.stack([layer(x) for x in xs]).detach()
        bg.reset(layer)
        for x in xs[:3]:
            layer(x)
        layer.double()
        got = torch.stack([layer(x.double()) for x in xs[3:]]).detach()
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want[3:].double(), rtol=1e-5, atol=1e-5)


class _Bi(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(N, H, num_layers=2, bidirectional=True)
        self.head = nn.Linear(2 * H, 4)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def test_torch_recurrent_layers_left_dense_are_counted_at_their_dense_cost():
    """convert's warning says layers left dense are counted by simulate; a bidirectional GRU
    was missing from every total (the converted head alone made the ratio)."""
    torch.manual_seed(0)
    net = _converted(_Bi())
    assert not net.conversion_report["rnn"]["converted"]
    xs = _stream(7).clamp_min(0)  # some zero inputs: effective synops below the MACs
    ys, rep = bg.simulate(net, xs, mode="dense")
    with torch.no_grad():
        torch.testing.assert_close(ys, _Bi.forward(net, xs))
    G, D = 3, 2
    per_step = D * G * H * (N + H) + D * G * H * (D * H + H)  # layer 0 + layer 1, both ways
    layer = rep.layers["rnn"]
    assert layer["dense"] and layer["dense_synops"] == pytest.approx(T * per_step)
    assert rep.trace["rnn"]["dense_synops"] == pytest.approx([per_step] * T)
    assert 0 < layer["synops"] < layer["dense_synops"]
    assert rep.total["dense_synops"] == pytest.approx(T * (per_step + 2 * H * 4))


def test_plain_cell_loop_in_dense_mode_runs_on_the_sequence_and_counts_every_step():
    """A torch cell loop left dense: simulate folded time into the batch (the loop then ran
    over samples) and its counter crashed; it gets the sequence, each cell call one step."""
    torch.manual_seed(0)
    ref = _CellLoop("lstm").eval()
    xs = _stream(8)
    ys, rep = bg.simulate(ref, xs, mode="dense")
    with torch.no_grad():
        torch.testing.assert_close(ys, ref(xs))
    assert rep.trace["cell"]["dense_synops"] == pytest.approx([4 * H * (N + H)] * T)
    assert rep.trace["head"]["dense_synops"] == pytest.approx([H * 4] + [0] * (T - 1))


def test_a_layer_called_twice_per_step_is_counted_twice():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(N, N)

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    xs = _stream(9)
    for mode in ("event", "dense"):
        _, rep = bg.simulate(Twice(), xs, mode=mode)
        assert rep.layers["lin"]["dense_synops"] == pytest.approx(2 * T * N * N), mode
        assert rep.trace["lin"]["dense_synops"] == pytest.approx([2 * N * N] * T), mode


@pytest.mark.parametrize("mode", ["event", "dense"])
@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_a_cell_in_a_sequential_is_stepped_and_equals_the_torch_loop(kind, mode):
    """In an nn.Sequential a cell gets one step per call (xs[t]), in dense mode too (it was
    handed the whole (T, B, n) stream and refused it); an LSTM cell's (h, c) gives h."""
    torch.manual_seed(0)
    cell = nn.GRUCell(N, H) if kind == "gru" else nn.LSTMCell(N, H)
    event_cell = (bg.EventGRUCell if kind == "gru" else bg.EventLSTMCell)._from_torch(cell, 100)
    head = nn.Linear(H, 4)
    if kind == "gru":  # an event layer after the cell takes (B, H) steps
        net = nn.Sequential(event_cell, bg.EventLinear.from_linear(head, 4))
    else:  # an LSTM cell returns (h, c): as the last module its h is the output
        net = nn.Sequential(event_cell)
    xs = _stream(10)
    ys, _ = bg.simulate(net, xs, mode=mode)
    with torch.no_grad():
        h = None
        for t, x in enumerate(xs):
            h = cell(x, h)
            want = head(h) if kind == "gru" else h[0]
            torch.testing.assert_close(ys[t], want, rtol=1e-5, atol=1e-5)


def _twice_models():
    torch.manual_seed(0)
    lin = nn.Linear(N, N)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    ev = bg.EventLinear.from_linear(lin, N)  # one event layer placed twice
    return {"forward": Twice(), "sequential": nn.Sequential(ev, nn.ReLU(), ev)}


@pytest.mark.parametrize("kind", ["forward", "sequential"])
def test_an_event_layer_run_twice_per_step_is_refused_and_counted_twice_in_dense(kind):
    """One event layer called twice per step mixed two streams in its state and was counted
    once (the Report showed half the dense cost); event mode refuses it with the fix, dense
    mode counts every call."""
    net = _twice_models()[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg.convert(net, rank=1.0)
    xs = _stream(11)
    with pytest.raises(ValueError, match="ran 2 times at step 0.*its own layer"):
        bg.simulate(net, xs, mode="event")
    ys, rep = bg.simulate(net, xs, mode="dense")
    name = "lin" if kind == "forward" else "0"
    assert rep.layers[name]["dense_synops"] == pytest.approx(2 * T * N * N)


def test_an_event_layer_skipped_at_a_step_is_refused():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = bg.EventLinear(N, N, 2), bg.EventLinear(N, N, 2)
            self.t = 0

        def forward(self, x):
            self.t += 1
            y = self.a(x)
            return self.b(y) if self.t < 3 else y  # b stops running: its counts went stale

    with pytest.raises(ValueError, match="'b' did not run at step 2"):
        bg.simulate(Skip(), _stream(12), mode="event")
