"""EventLinear: event path = dense path at θ = 0, the error bound at θ > 0, counters, errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import braingate as bg

from ._helpers import dense_out


def rowsum_norm(a: torch.Tensor) -> torch.Tensor:
    return a.abs().sum(-1).amax(-1)


def bound(layer: bg.EventLinear) -> torch.Tensor:
    """θ‖W_g‖∞ + θz‖U diag(s⊙g)‖∞ per sample (row-sum norms)."""
    g = layer.gate_units().to(layer.s.dtype)
    Ug = layer.U * (layer.s * g).unsqueeze(-2)
    return layer.threshold * rowsum_norm(
        layer.dense_weight()
    ) + layer.latent_threshold * rowsum_norm(Ug)


@pytest.mark.parametrize("grad", [False, True], ids=["kernel", "torch"])
def test_zero_threshold_event_equals_dense_with_changing_gates(grad):
    torch.manual_seed(1)
    layer = bg.EventLinear(40, 24, 12, blocks=4, dtype=torch.float64)
    layer.execution = "event"
    B = 5
    for t in range(60):
        if t % 7 == 3:
            layer.set_active_blocks(torch.rand(B, 4) > 0.4)
        if t == 30:
            layer.set_active_blocks(2)
        x = torch.randn(B, 40, dtype=torch.float64) * (torch.rand(B, 40) < 0.3)
        with torch.set_grad_enabled(grad):
            y = layer(x)
        ref = dense_out(layer, x).detach()
        assert torch.allclose(y.detach(), ref, rtol=1e-5, atol=1e-9 * float(ref.abs().max()))


def test_kernel_and_torch_reference_agree():
    torch.manual_seed(2)
    a = bg.EventLinear(
        30, 20, 8, blocks=2, threshold=0.3, latent_threshold=0.05, dtype=torch.float64
    )
    b = bg.EventLinear(
        30, 20, 8, blocks=2, threshold=0.3, latent_threshold=0.05, dtype=torch.float64
    )
    b.load_state_dict(a.state_dict())
    a.execution = b.execution = "event"
    x = torch.zeros(3, 30, dtype=torch.float64)
    for t in range(40):
        x = x + 0.2 * torch.randn_like(x)
        if t == 20:
            a.set_active_blocks(torch.tensor([[True, False], [False, True], [True, True]]))
            b.set_active_blocks(torch.tensor([[True, False], [False, True], [True, True]]))
        with torch.no_grad():
            ya = a(x)  # numba kernel
        yb = b(x)  # torch reference (grad enabled, parameters require grad)
        assert torch.allclose(ya, yb.detach(), atol=1e-9)
        assert (a._runner.last_counts == b._runner.last_counts).all()


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 24),
    m=st.integers(2, 24),
    theta=st.floats(0.0, 0.5),
    theta_z=st.floats(0.0, 0.5),
    blocks=st.sampled_from([1, 2]),
    seed=st.integers(0, 2**16),
)
def test_error_bound_holds_at_every_step(n, m, theta, theta_z, blocks, seed):
    torch.manual_seed(seed)
    rank = max(blocks, min(n, m) // blocks * blocks)
    layer = bg.EventLinear(n, m, rank, blocks=blocks, threshold=theta, latent_threshold=theta_z,
                           dtype=torch.float64)  # fmt: skip
    layer.execution = "event"
    x = torch.zeros(3, n, dtype=torch.float64)
    with torch.no_grad():
        for t in range(25):
            x = x + 0.3 * torch.randn_like(x)
            if blocks == 2 and t == 12:
                layer.set_active_blocks(torch.tensor([[True, False], [False, True], [True, True]]))
            err = (layer(x) - dense_out(layer, x)).abs().amax(-1)
            assert bool((err <= bound(layer) + 1e-9).all())


@pytest.mark.slow
def test_slow_ramp_stays_in_bound_for_1e5_steps():
    """The case where snntorch's DeltaLeaky drifts (REFERENCES §A): 0.1 per step, θ = 0.5."""
    torch.manual_seed(3)
    layer = bg.EventLinear(4, 3, 3, threshold=0.5, latent_threshold=0.1)
    layer.execution = "event"
    with torch.no_grad():
        b = float(bound(layer).max())
        for t in range(1, 100_001):
            x = torch.full((1, 4), 0.1 * t) * torch.tensor([1.0, -0.5, 0.25, 0.0])
            y = layer(x)
            if t % 997 == 0 or t == 100_000:
                err = float((y - dense_out(layer, x)).abs().max())
                # float32 rounding of values of size 0.1·t is allowed on top of the bound
                assert err <= b + 1e-6 * 0.1 * t, (t, err, b)
    assert layer._runner.input_unit_events.sum() > 0


def test_counters_equal_independent_recomputation():
    torch.manual_seed(4)
    n, m, R = 16, 10, 8
    layer = bg.EventLinear(n, m, R, blocks=2, threshold=0.2, latent_threshold=0.1)
    layer.set_active_blocks(torch.tensor([[True, True], [True, False]]))
    xs = torch.randn(12, 2, n).cumsum(0) * 0.3
    _, rep = bg.simulate(layer, xs, mode="event")
    # recompute from the definitions with our own sigma-delta loop
    V = layer.V.detach()
    g = layer.gate_units().float()
    x_hat, z_hat = torch.zeros(2, n), torch.zeros(2, R)
    ie = le = syn = 0.0
    for x in xs:
        e = (x - x_hat).abs() > 0.2
        x_hat = torch.where(e, x, x_hat)
        z = (x_hat @ V) * g
        L = ((z - z_hat).abs() > 0.1) & (g > 0)
        z_hat = torch.where(L, z, z_hat)
        ie += e.sum().item()
        le += L.sum().item()
        syn += (e.sum(-1) * g.sum(-1) + L.sum(-1) * m).sum().item()
    t = rep.total
    assert t["input_events"] == pytest.approx(ie / 2)
    assert t["latent_events"] == pytest.approx(le / 2)
    assert t["synops"] == pytest.approx(syn / 2)
    assert t["dense_synops"] == 12 * n * m
    assert t["lowrank_ops"] == pytest.approx(12 * (n + m) * (8 + 4) / 2)
    assert rep.trace[""]["synops"][0] > 0 and len(rep.trace[""]["synops"]) == 12


def test_from_linear_full_rank_reproduces_linear():
    lin = nn.Linear(20, 12)
    layer = bg.EventLinear.from_linear(lin, 12)
    x = torch.randn(7, 20)
    assert torch.allclose(layer(x), lin(x), rtol=1e-5, atol=1e-5)
    assert layer.approx_error < 1e-6


def test_convert_mlp_stays_within_reported_error():
    torch.manual_seed(5)
    mlp = nn.Sequential(nn.Linear(32, 48), nn.ReLU(), nn.Linear(48, 10))
    ref = [mlp[0].weight.detach().clone(), mlp[2].weight.detach().clone()]
    bg.convert(mlp, rank=8)
    assert isinstance(mlp[0], bg.EventLinear) and isinstance(mlp[2], bg.EventLinear)
    for w, name in zip(ref, ["0", "2"]):
        layer = mlp[int(name)]
        rel = torch.linalg.norm(w - layer.dense_weight()) / torch.linalg.norm(w)
        assert float(rel.detach()) == pytest.approx(mlp.conversion_errors[name], rel=1e-4)
        assert 0 < mlp.conversion_errors[name] < 1


def test_state_dict_round_trip_keeps_thresholds_and_mode():
    a = bg.EventLinear(10, 6, 4, threshold=0.3, latent_threshold=0.1)
    a.execution = "event"
    b = bg.EventLinear(10, 6, 4)
    b.load_state_dict(a.state_dict())
    assert b.threshold == 0.3 and b.latent_threshold == 0.1 and b.execution == "event"
    assert torch.equal(a.U, b.U) and torch.equal(a.V, b.V) and torch.equal(a.s, b.s)


def test_torch_compile_of_dense_path():
    layer = bg.EventLinear(16, 8, 4)
    compiled = torch.compile(layer, backend="eager")
    x = torch.randn(5, 3, 16)
    assert torch.allclose(compiled(x), layer(x))


def test_auto_mode_matches_dense_at_zero_threshold_and_switches_paths():
    torch.manual_seed(6)
    layer = bg.EventLinear(64, 32, 16)
    layer.execution = "auto"
    x = torch.randn(1, 64)
    with torch.no_grad():
        for t in range(30):
            if t < 10:  # dense activity
                x = torch.randn(1, 64)
            else:  # sparse changes
                x = x.clone()
                x[0, t % 64] += 1.0
            y = layer(x)
            assert torch.allclose(y, dense_out(layer, x), atol=1e-5)


def test_batch_change_without_reset_is_an_error_and_keeps_state():
    layer = bg.EventLinear(8, 4, 2)
    layer.execution = "event"
    layer(torch.randn(2, 8))
    before = layer._runner.state
    with pytest.raises(ValueError, match="batch size changed"):
        layer(torch.randn(3, 8))
    assert layer._runner.state is before


@pytest.mark.parametrize("mode", ["event", "auto"])
def test_layer_without_bias_runs_in_every_mode(mode):
    layer = bg.EventLinear(12, 6, 3, bias=False)
    x = torch.randn(2, 12)
    ref = layer(x)
    layer.execution = mode
    with torch.no_grad():
        assert torch.allclose(layer(x), ref, atol=1e-5)
        assert torch.allclose(layer(x + 1), dense_out(layer, x + 1), atol=1e-5)
