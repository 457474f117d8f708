"""EventConv2d / EventConv1d: event = dense at θ = 0, the §2b bound, counters, errors, state."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from braingate.functional.conv_events import conv_error_bound
from braingate.nn.event_conv import EventConv1d, EventConv2d

GEOMETRIES = [
    dict(),
    dict(stride=2),
    dict(padding=1),
    dict(stride=2, padding=2, dilation=2),
    dict(stride=(1, 2), padding=(2, 0), dilation=(2, 1)),
]


def dense_of(layer, x):
    """The layer's dense output for ``x`` (mode restored)."""
    mode = layer.execution
    layer.execution = "dense"
    try:
        return layer(x)
    finally:
        layer.execution = mode


def run(layer, x, grad):
    with torch.set_grad_enabled(grad):
        return layer(x).detach()


@pytest.mark.parametrize("granularity", ["element", "pixel"])
@pytest.mark.parametrize("grad", [False, True], ids=["kernel", "torch"])
@pytest.mark.parametrize("geom", GEOMETRIES, ids=lambda g: str(g) or "plain")
def test_zero_threshold_event_equals_dense_conv_with_gates_changing(geom, grad, granularity):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, **geom)
    layer = EventConv2d.from_conv(conv, rank=8, blocks=4, granularity=granularity)
    layer.execution = "event"
    B = 3
    x = torch.zeros(B, 3, 11, 9)
    for t in range(14):
        x = x + torch.randn_like(x) * (torch.rand_like(x) < 0.3)
        if t == 4:
            layer.set_active_blocks(torch.rand(B, 4) > 0.4)
        if t == 9:
            layer.set_active_blocks(2)
        if t == 12:
            layer.set_active_blocks(None)
        y = run(layer, x, grad)
        ref = dense_of(layer, x).detach()
        scale = float(ref.abs().max())
        assert torch.allclose(y, ref, rtol=1e-5, atol=1e-5 * scale), (t, (y - ref).abs().max())
    # full rank without gates: the original conv itself
    torch.testing.assert_close(y, conv(x).detach(), rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("grad", [False, True], ids=["kernel", "torch"])
@pytest.mark.parametrize("geom", [dict(), dict(stride=3, padding=2, dilation=2)], ids=str)
def test_zero_threshold_conv1d_equals_dense(geom, grad):
    torch.manual_seed(1)
    conv = nn.Conv1d(4, 6, 5, **geom)
    layer = EventConv1d.from_conv(conv, rank=6, blocks=3)
    layer.execution = "event"
    x = torch.zeros(2, 4, 30)
    for t in range(8):
        x = x + torch.randn_like(x) * (torch.rand_like(x) < 0.2)
        if t == 5:
            layer.set_active_blocks(torch.tensor([[True, False, True], [False, True, False]]))
        ref = dense_of(layer, x).detach()
        torch.testing.assert_close(run(layer, x, grad), ref, rtol=1e-5, atol=1e-5)


def test_dense_path_folds_a_sequence_into_one_call():
    torch.manual_seed(2)
    conv = nn.Conv2d(2, 5, 3, stride=2, padding=1)
    layer = EventConv2d.from_conv(conv, rank=5)
    xs = torch.randn(4, 3, 2, 10, 10)
    ys = layer(xs)
    assert ys.shape == (4, 3, 5, 5, 5)
    torch.testing.assert_close(ys, conv(xs.flatten(0, 1)).unflatten(0, (4, 3)))
    torch.testing.assert_close(layer(xs[0, 0]), conv(xs[0, 0]))  # unbatched (C, H, W)
    # per-sample gate: the leading dims end with the batch
    layer.set_active_blocks(torch.tensor([[True], [False], [True]]))
    ys = layer(xs)
    torch.testing.assert_close(ys[:, 1], layer.bias.view(5, 1, 1).expand(4, 5, 5, 5))
    torch.testing.assert_close(ys[:, 0], conv(xs[:, 0]))


def test_from_conv_truncation_error_and_refusals():
    conv = nn.Conv2d(4, 6, 3)
    assert EventConv2d.from_conv(conv, 6).approx_error < 1e-6
    low = EventConv2d.from_conv(conv, 2)
    assert 0 < low.approx_error < 1
    with pytest.raises(ValueError, match="groups=2 is not supported"):
        EventConv2d.from_conv(nn.Conv2d(4, 6, 3, groups=2), 2)
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        EventConv2d.from_conv(nn.Conv2d(4, 6, 3, padding=1, padding_mode="reflect"), 2)
    with pytest.raises(TypeError, match="conv must be an Conv2d"):
        EventConv2d.from_conv(nn.Conv1d(4, 6, 3), 2)
    with pytest.raises(ValueError, match=r"rank=7 exceeds min\(out_channels"):
        EventConv2d(4, 6, 3, 7)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        EventConv2d(4, 6, 3, 2, stride=2, padding="same")
    assert EventConv2d(4, 6, 3, 2, padding="same").padding == (1, 1)


def brute_counts(x_prev_hat, x, th, geom_layer, z, z_hat_prev, thz, gate):
    """Input events, reached positions and latent events of one step by explicit enumeration."""
    kh, kw = geom_layer.kernel_size
    (sh, sw), (ph, pw), (dh, dw) = geom_layer.stride, geom_layer.padding, geom_layer.dilation
    B, C, H, W = x.shape
    Ho, Wo = geom_layer.out_spatial((H, W))
    ev = (x - x_prev_hat).abs() > th
    reached = np.zeros(B)
    for b, c, i, j in itertools.product(range(B), range(C), range(H), range(W)):
        if not ev[b, c, i, j]:
            continue
        for io, jo, ki, kj in itertools.product(range(Ho), range(Wo), range(kh), range(kw)):
            if io * sh - ph + ki * dh == i and jo * sw - pw + kj * dw == j:
                reached[b] += 1
    lat = (((z - z_hat_prev).abs() > thz) & gate[:, :, None, None]).flatten(1).sum(1).numpy()
    return ev.flatten(1).sum(1).numpy(), reached, lat


@pytest.mark.parametrize("geom", GEOMETRIES[1:4], ids=str)
def test_counters_equal_an_independent_recomputation(geom):
    torch.manual_seed(3)
    layer = EventConv2d(2, 5, 3, 4, blocks=2, threshold=0.4, latent_threshold=0.1, **geom)
    layer.execution = "event"
    layer.set_active_blocks(torch.tensor([[True, True], [True, False]]))
    x = torch.zeros(2, 2, 7, 8)
    st_ref = None
    with torch.no_grad():
        for _ in range(6):
            x = x + torch.randn_like(x) * 0.5
            prev = st_ref
            y = layer(x)  # compiled kernel
            _, st_ref, _ = layer.reference_step(x, st_ref)
            if prev is None:
                continue
            ie, reached, le = brute_counts(prev.x_hat, x, 0.4, layer, st_ref.z, prev.z_hat, 0.1,
                                           st_ref.gate)  # fmt: skip
            c = layer.last_counts
            active = layer.gate_units().sum(-1).numpy()
            np.testing.assert_array_equal(c.input_events, ie)
            np.testing.assert_array_equal(c.latent_events, le)
            np.testing.assert_array_equal(c.synops, reached * active + le * 5)
            Ho, Wo = layer.out_spatial((7, 8))
            np.testing.assert_array_equal(c.dense_synops, 5 * Ho * Wo * 2 * 9)
            np.testing.assert_array_equal(c.lowrank_ops, active * (18 + 5) * Ho * Wo)
            assert y.shape == (2, 5, Ho, Wo)
    in_u, lat_u = layer.unit_events()
    assert in_u.shape == (2,) and lat_u.shape == (4,) and in_u.sum() > 0


@settings(max_examples=25, deadline=None)
@given(
    theta=st.floats(0.0, 0.6),
    theta_z=st.floats(0.0, 0.6),
    stride=st.integers(1, 2),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    per_channel=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_error_bound_holds_at_every_step(theta, theta_z, stride, padding, dilation, per_channel,
                                         seed):  # fmt: skip
    torch.manual_seed(seed)
    th = torch.rand(3) * theta if per_channel else theta
    layer = EventConv2d(3, 4, 3, 4, blocks=2, stride=stride, padding=padding, dilation=dilation,
                        threshold=th, latent_threshold=theta_z, dtype=torch.float64)  # fmt: skip
    layer.execution = "event"
    x = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        for t in range(25):
            x = x + 0.3 * torch.randn_like(x)
            if t == 10:
                layer.set_active_blocks(torch.tensor([[True, False], [True, True]]))
            err = (layer(x) - dense_of(layer, x)).abs().amax((-1, -2))  # (B, C_out)
            bound = conv_error_bound(layer.U, layer.s, layer.V, layer.gate_units(),
                                     layer.threshold, layer.latent_threshold, 3)  # fmt: skip
            assert (err <= bound + 1e-9).all(), (t, err, bound)


def test_resync_keeps_the_stream_and_counts_its_work():
    torch.manual_seed(4)
    a = EventConv2d(2, 4, 3, 4, padding=1, threshold=0.2, latent_threshold=0.05, resync_every=3)
    b = EventConv2d(2, 4, 3, 4, padding=1, threshold=0.2, latent_threshold=0.05, resync_every=0)
    b.load_state_dict(a.state_dict())
    b.resync_every = 0
    a.execution = b.execution = "event"
    x = torch.zeros(1, 2, 6, 6)
    with torch.no_grad():
        for _ in range(7):
            x = x + torch.randn_like(x)
            torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-5)
    assert a.report_entry(1)["resync_ops"] > 0 and b.report_entry(1)["resync_ops"] == 0


def test_factor_edit_mid_stream_resyncs_to_the_new_weights():
    torch.manual_seed(5)
    layer = EventConv2d(2, 4, 3, 4, padding=1)
    layer.execution = "event"
    x = torch.randn(1, 2, 6, 6)
    with torch.no_grad():
        layer(x)
        layer.V.mul_(0.5)
        torch.testing.assert_close(layer(x), dense_of(layer, x), rtol=1e-5, atol=1e-6)
        layer.bias.add_(1.0)  # the bias lives in the kernel's output state: edits reach it
        torch.testing.assert_close(layer(x), dense_of(layer, x), rtol=1e-5, atol=1e-6)
        layer.reset()  # a new stream of another batch size starts from the bias
        x2 = torch.randn(3, 2, 6, 6)
        torch.testing.assert_close(layer(x2), dense_of(layer, x2), rtol=1e-5, atol=1e-6)
        with torch.enable_grad():  # the torch path takes over the stream, then the kernel again
            torch.testing.assert_close(layer(x2 * 2).detach(), dense_of(layer, x2 * 2).detach(),
                                       rtol=1e-5, atol=1e-6)  # fmt: skip
        torch.testing.assert_close(layer(x2), dense_of(layer, x2), rtol=1e-5, atol=1e-6)


def state_after(layer, xs):
    layer.reset()
    with torch.no_grad():
        return [layer(x) for x in xs]


def test_bad_input_raises_clearly_and_leaves_the_stream_untouched():
    torch.manual_seed(6)
    layer = EventConv2d(2, 4, 3, 4, threshold=0.1)
    xs = [torch.randn(2, 2, 6, 6) for _ in range(3)]
    layer.execution = "event"
    want = state_after(layer, xs)
    layer.reset()
    bad = [
        (torch.randn(2, 3, 6, 6), ValueError, "in_channels=2"),
        (torch.randn(2, 2, 2, 2), ValueError, "smaller than the dilated kernel"),
        (torch.randn(4, 2, 2, 6, 6), ValueError, "takes one time step"),
        (torch.randn(3, 2, 6, 6), ValueError, "batch size changed from 2 to 3"),
        (torch.randn(2, 2, 7, 6), ValueError, r"spatial size \(7, 6\) differs"),
        (torch.randn(2, 2, 6, 6, dtype=torch.float64), TypeError, "dtype torch.float64"),
        (torch.randn(2, 2, 6, 6).to_sparse(), TypeError, "to_dense"),
        ([1.0], TypeError, "torch.Tensor"),
    ]
    with torch.no_grad():
        got = [layer(xs[0])]
        for x, err, msg in bad:
            with pytest.raises(err, match=msg):
                layer(x)
        got += [layer(x) for x in xs[1:]]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="granularity='row' is unknown"):
        layer.granularity = "row"


def test_state_dict_round_trip_keeps_thresholds_gates_and_learned_thresholds():
    torch.manual_seed(7)
    a = EventConv2d(2, 4, 3, 4, blocks=2, threshold=torch.tensor([0.1, 0.2]), latent_threshold=0.05)
    a.set_active_blocks(1)
    a.learn_thresholds()
    a.execution = "event"
    b = EventConv2d(2, 4, 3, 4, blocks=2)
    b.load_state_dict(a.state_dict())
    assert b.execution == "event"
    torch.testing.assert_close(b.threshold, a.threshold)
    torch.testing.assert_close(b.gate_units(), a.gate_units())
    x = torch.randn(1, 2, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x))


def test_reference_step_passes_surrogate_gradients_to_learned_thresholds():
    torch.manual_seed(8)
    layer = EventConv2d(2, 4, 3, 4, padding=1, threshold=0.3, latent_threshold=0.1)
    layer.learn_thresholds()
    x = torch.zeros(2, 2, 6, 6)
    state = layer.init_state(2, x)
    loss = 0
    for _ in range(3):
        x = x + torch.randn_like(x)
        y, state, c = layer.reference_step(x, state)
        loss = loss + y.pow(2).mean() + 1e-3 * c.synops.sum()
    loss.backward()
    assert layer.threshold_raw.grad is not None and layer.threshold_raw.grad.abs().sum() > 0
    assert layer.latent_threshold_raw.grad.abs().sum() > 0
    assert layer.V.grad.abs().sum() > 0


def test_protocol_fields():
    layer = EventConv2d(2, 4, (3, 5), 4, stride=2, padding=(1, 2))
    assert layer.kind == "event_conv2d" and EventConv1d.kind == "event_conv1d"
    layer(torch.randn(1, 2, 9, 11))
    d = layer.describe()
    assert d["in_features"] == 30 and d["out_features"] == 4 and d["kernel_size"] == [3, 5]
    assert d["in_spatial"] == [9, 11] and d["out_spatial"] == [5, 6]
    dc = layer.dense_counts((2, 9, 11))
    assert dc.dense_synops == 4 * 30 * 30  # C_out·H'W'·C_in·kh·kw
    assert dc.lowrank_ops == 4 * (30 + 4) * 30
    assert layer.last_counts is None


def test_a_saved_and_loaded_model_continues_its_stream_in_module_and_chain_stepping(tmp_path):
    """torch.save / torch.load mid-stream (state arrays come back as views of the file's buffer:
    the runner takes owned copies, so the kernel and compiled chains run on them) and deepcopy
    after a chain was compiled (its weak callbacks are not copied)."""
    import copy

    from braingate.sim.fused import compile_events

    torch.manual_seed(5)
    net = nn.Sequential(EventConv2d(16, 32, 3, 8, padding=1, threshold=0.05), nn.ReLU())
    net[0].execution = "event"
    xs = [torch.randn(1, 16, 40, 40) for _ in range(4)]
    with torch.no_grad():
        compile_events(net)(xs[0])
        torch.save(net, tmp_path / "net.pt")
        loaded = torch.load(tmp_path / "net.pt", weights_only=False)
        twin = copy.deepcopy(net)
        want = [net(x) for x in xs[1:]]
        chain = compile_events(loaded, strict=True)
        for got_net in (loaded, twin):
            for i, x in enumerate(xs[1:]):
                step = chain if got_net is loaded and i else got_net
                torch.testing.assert_close(step(x), want[i], rtol=1e-5, atol=1e-5)
