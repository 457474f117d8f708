"""Compiled conv CNNs: pooling ops against torch, one compiled call per frame, chain = module
stepping = torch reference, resets, re-syncs and non-finite input."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import braingate as bg
from braingate.nn.base import EventModule, event_modules
from braingate.nn.event_conv import EventConv1d, EventConv2d
from braingate.runtime import OPS, fuser_for
from braingate.sim.fused import compile_events

POOLS = [
    nn.MaxPool2d(2),
    nn.MaxPool2d(3, stride=2, padding=1),
    nn.MaxPool2d((2, 3), stride=(1, 2), dilation=(2, 1)),
    nn.AvgPool2d(2),
    nn.AvgPool2d(3, stride=2, padding=1),
    nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
    nn.MaxPool1d(3, stride=2, padding=1),
    nn.AvgPool1d(4, stride=3, padding=2),
]


def _op_step(module, x, B=None):
    row = fuser_for(module)(module, x.shape[0], x.dtype, tuple(x.shape[1:]))
    assert not isinstance(row, str), row
    out = OPS.get(row.op).step(x.reshape(x.shape[0], -1).numpy(), np.array(row.values, np.int64),
                               np.zeros(1, x.numpy().dtype), np.zeros(1, np.bool_))  # fmt: skip
    return row, out


@pytest.mark.parametrize("pool", POOLS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pool_op_equals_torch(pool, dtype):
    torch.manual_seed(0)
    shape = (2, 3, 9, 11) if "2d" in type(pool).__name__ else (2, 3, 17)
    x = torch.randn(shape, dtype=dtype)
    row, _ = _op_step(pool, x)
    op, values = OPS.get(row.op), np.array(row.values, np.int64)
    w = (np.zeros(1, x.numpy().dtype), np.zeros(1, np.bool_))
    for t in range(6):  # one row, inputs changing in part and in whole
        if t == 2:
            x = x.clone()
            x[..., 4] += 1.0  # one column
        elif t == 3:
            x = x.clone()
            x[1, 2] = -x[1, 2]  # one channel of one sample
        elif t == 4:
            x = torch.randn(shape, dtype=dtype)
        out = op.step(x.reshape(2, -1).numpy(), values, *w)
        torch.testing.assert_close(torch.from_numpy(out).reshape(pool(x).shape), pool(x))
    x[0, 0].fill_(float("nan"))
    out = op.step(x.reshape(2, -1).numpy(), values, *w)
    torch.testing.assert_close(torch.from_numpy(out).reshape(pool(x).shape), pool(x),
                               equal_nan=True)  # fmt: skip


def test_pool_refusals_are_reasons():
    x = (3, 8, 8)
    assert "ceil_mode" in fuser_for(nn.MaxPool2d(2, ceil_mode=True))(
        nn.MaxPool2d(2, ceil_mode=True), 1, torch.float32, x
    )
    pool = nn.AvgPool2d(2, divisor_override=3)
    assert "divisor_override" in fuser_for(pool)(pool, 1, torch.float32, x)
    assert "per-sample shape" in fuser_for(pool)(pool, 1, torch.float32, (64,))


def cnn(theta=0.0, theta_z=0.0, head_th=0.0, dtype=torch.float32):
    torch.manual_seed(1)
    dense = nn.Sequential(
        nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=2, padding=1, dilation=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 5),
    ).to(dtype)  # fmt: skip
    ev = nn.Sequential(
        EventConv2d.from_conv(dense[0], 6, blocks=2, threshold=theta, latent_threshold=theta_z),
        nn.ReLU(), nn.MaxPool2d(2),
        EventConv2d.from_conv(dense[3], 8, blocks=2, threshold=theta, latent_threshold=theta_z,
                              granularity="pixel"),
        nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        bg.EventLinear.from_linear(dense[7], 5, threshold=head_th),
    )  # fmt: skip
    for m in event_modules(ev).values():
        m.execution = "event"
    return dense, ev


def stream(T=12, B=2, dtype=torch.float32):
    torch.manual_seed(2)
    x = torch.zeros(B, 2, 16, 16, dtype=dtype)
    out = []
    for _ in range(T):
        x = x + torch.randn_like(x) * (torch.rand_like(x) < 0.15)
        out.append(x.clone())
    return out


def reference_run(model, xs):
    """Every event layer through its torch reference_step, other modules as torch calls."""
    states = {}
    ys = []
    for x in xs:
        h = x
        for i, m in enumerate(model):
            if isinstance(m, EventModule):
                init = m.init_state(h.shape[0], h) if i not in states else states[i]
                h, states[i], _ = m.reference_step(h, init)
            else:
                h = m(h)
        ys.append(h.detach())
    return ys


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_cnn_is_one_call_per_frame_and_equals_module_stepping_and_reference(dtype):
    dense, ev = cnn(theta=0.05, theta_z=0.02, head_th=0.01, dtype=dtype)
    twin = copy.deepcopy(ev)
    xs = stream(dtype=dtype)
    chain = compile_events(ev, strict=True)
    with torch.no_grad():
        got = [chain(x).clone() for x in xs]
        mod = [twin(x).clone() for x in xs]
    assert chain.compiled_segments == 1
    ref = reference_run(copy.deepcopy(twin), xs)
    for a, b, c in zip(got, mod, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-4)
    for name, layer in event_modules(ev).items():  # same counters on both paths
        other = event_modules(twin)[name]
        for f in ("synops", "input_events", "latent_events"):
            np.testing.assert_array_equal(getattr(layer.last_counts, f),
                                          getattr(other.last_counts, f))  # fmt: skip
        for u, v in zip(layer.unit_events(), other.unit_events(), strict=True):
            np.testing.assert_array_equal(u, v)


def test_compiled_cnn_at_zero_threshold_equals_the_dense_cnn_and_resets():
    dense, ev = cnn()
    xs = stream(T=6)
    chain = compile_events(ev, strict=True)
    with torch.no_grad():
        for _ in range(2):  # a second stream after a chain reset
            for x in xs:
                torch.testing.assert_close(chain(x), dense(x), rtol=1e-5, atol=1e-5)
            chain.reset()
            assert all(m.last_counts is None for m in event_modules(ev).values()
                       if isinstance(m, EventConv2d))  # fmt: skip
        bg.reset(ev)  # the module reset path, then a new stream through the chain
        for x in xs[:3]:
            torch.testing.assert_close(chain(x), dense(x), rtol=1e-5, atol=1e-5)


def test_chain_resyncs_in_place_and_notices_edits_and_gates():
    dense, ev = cnn(theta=0.0)
    for m in event_modules(ev).values():
        m.resync_every = 2
    chain = compile_events(ev, strict=True)
    xs = stream(T=8)
    with torch.no_grad():
        for t, x in enumerate(xs):
            if t == 3:
                ev[0].V.mul_(0.9)  # an in-place edit: lowered again, stream re-synced
                dense[0].weight.mul_(0.9)
            if t == 5:
                ev[3].set_active_blocks(1)
            y = chain(x)
            if t < 5:
                torch.testing.assert_close(y, dense(x), rtol=1e-5, atol=1e-5)
    assert ev[0].report_entry(2)["resync_ops"] > 0


def test_nonfinite_input_is_refused_by_every_path_and_the_state_is_kept():
    _, ev = cnn(theta=0.05)
    xs = stream(T=4)
    bad = xs[1].clone()
    bad[0, 0, 3, 3] = float("nan")
    chain = compile_events(ev, strict=True)
    twin = copy.deepcopy(ev)
    with torch.no_grad():
        want = [twin(x) for x in xs]
        chain(xs[0])
        with pytest.raises(ValueError, match="non-finite input"):
            chain(bad)
        got = [chain(x) for x in xs[1:]]
    for a, b in zip(got, want[1:], strict=True):
        torch.testing.assert_close(a, b)
    layer = EventConv2d(2, 3, 3, 2)
    with pytest.raises(ValueError, match="non-finite input"):
        layer(bad)  # dense
    layer.execution = "event"
    with pytest.raises(ValueError, match="non-finite input"):
        layer(bad)  # torch path (grad)


def test_conv1d_chain():
    torch.manual_seed(3)
    dense = nn.Sequential(nn.Conv1d(3, 6, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
                          nn.Flatten(), nn.Linear(6 * 10, 4))  # fmt: skip
    ev = nn.Sequential(EventConv1d.from_conv(dense[0], 6), nn.ReLU(), nn.MaxPool1d(2),
                       nn.Flatten(), bg.EventLinear.from_linear(dense[4], 4))  # fmt: skip
    for m in event_modules(ev).values():
        m.execution = "event"
    chain = compile_events(ev, strict=True)
    x = torch.zeros(2, 3, 20)
    with torch.no_grad():
        for _ in range(5):
            x = x + torch.randn_like(x) * (torch.rand_like(x) < 0.3)
            torch.testing.assert_close(chain(x), dense(x), rtol=1e-5, atol=1e-5)
    assert chain.compiled_segments == 1


@pytest.mark.parametrize("granularity", ["element", "pixel"])
@pytest.mark.parametrize(
    "geom",
    [dict(padding=1), dict(stride=2, padding=1), dict(padding=(0, 2), dilation=(1, 2))],
    ids=["row-block", "stride2", "dilated"],
)
def test_kernel_equals_torch_reference_above_zero_thresholds(geom, granularity):
    """The compiled step against the torch reference at θ, θ_z > 0: odd sizes (mask words
    padded per channel), a rank that is not a multiple of the SIMD width, partial gates mid-stream;
    outputs, counts and per-channel events equal (float64: no event flips on rounding)."""
    torch.manual_seed(4)
    conv = nn.Conv2d(5, 11, 3, **geom).double()
    layer = EventConv2d.from_conv(conv, rank=9, blocks=3, threshold=0.3, latent_threshold=0.2,
                                  granularity=granularity)  # fmt: skip
    layer.execution = "event"
    ref = copy.deepcopy(layer)
    x = torch.zeros(2, 5, 13, 11, dtype=torch.float64)
    state = None
    events = np.zeros(2)
    for t in range(10):
        x = x + torch.randn_like(x) * (torch.rand_like(x) < 0.3)
        if t == 4:
            for m in (layer, ref):
                m.set_active_blocks(torch.tensor([[True, False, True], [False, True, True]]))
        if t == 7:
            for m in (layer, ref):
                m.set_active_blocks(None)
        with torch.no_grad():
            y = layer(x)
            want, state, counts = ref.reference_step(x, state)
        torch.testing.assert_close(y, want, rtol=1e-9, atol=1e-9)
        got = layer.last_counts
        for f in ("input_events", "latent_events", "synops", "gate_ops"):
            np.testing.assert_array_equal(np.asarray(getattr(got, f)),
                                          np.asarray(getattr(counts, f)), err_msg=f)  # fmt: skip
        events += np.asarray(got.input_events)
    assert events.min() > 0  # the stream had events on every sample
