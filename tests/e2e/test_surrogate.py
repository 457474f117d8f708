"""Training through events: surrogate sigma-delta, learnable thresholds, activity penalty."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import braingate as bg
from braingate.functional.events import sigma_delta
from braingate.functional.surrogate import sigma_delta_surrogate, surrogate_names
from braingate.train.events_in_loop import events_in_loop, rollout


def _net(threshold: float = 0.1) -> nn.Sequential:
    return nn.Sequential(
        bg.EventLinear(6, 16, 6, threshold=threshold, latent_threshold=threshold),
        nn.ReLU(),
        bg.EventLinear(16, 3, 3, threshold=threshold, latent_threshold=threshold),
    )


def _stream(T: int = 20, B: int = 4, n: int = 6) -> torch.Tensor:
    return torch.randn(T, B, n).cumsum(0) * 0.3


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16), theta=st.floats(0.0, 1.0), name=st.sampled_from(surrogate_names())
)
def test_surrogate_forward_equals_hard_step(seed, theta, name):
    g = torch.Generator().manual_seed(seed)
    x, ref = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    active = torch.rand(3, 7, generator=g) > 0.3
    d0, e0, r0 = sigma_delta(x, ref, theta, active)
    d1, e1, r1 = sigma_delta_surrogate(x, ref, torch.tensor(theta), active, surrogate=name)
    assert torch.equal(d0, d1) and torch.equal(r0, r1)
    assert torch.equal(e0, e1.bool())


def test_sigma_delta_picks_surrogate_for_learned_threshold(rng):
    x, ref = torch.randn(4, 5), torch.zeros(4, 5)
    th = torch.full((5,), 0.5, requires_grad=True)
    _, events, _ = sigma_delta(x, ref, th)
    assert events.dtype == x.dtype and events.requires_grad
    events.sum().backward()
    assert th.grad is not None and bool((th.grad <= 0).all()) and float(th.grad.sum()) < 0


def test_unknown_surrogate_lists_known():
    with pytest.raises(ValueError, match="fast_sigmoid"):
        sigma_delta(torch.zeros(2), torch.zeros(2), 0.1, surrogate="nope")


def test_thresholds_receive_gradient(rng):
    net = _net()
    for m in net:
        if isinstance(m, bg.EventLinear):
            m.learn_thresholds(per_unit=True)
    out, tape = rollout(net, _stream())
    loss = out.pow(2).mean() + tape.penalty()
    loss.backward()
    for name, p in net.named_parameters():
        if "threshold" in name:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert float(p.grad.abs().sum()) > 0, name


def test_task_gradient_alone_reaches_thresholds(rng):
    net = _net(0.3)
    net[0].learn_thresholds(per_unit=False)
    out, _ = rollout(net, _stream())
    out.pow(2).mean().backward()
    assert float(net[0].threshold_raw.grad.abs()) > 0


def test_activity_penalty_lowers_events_on_fixed_model(rng):
    net, xs = _net(0.05), _stream(T=30, B=8)
    _, before = bg.simulate(net, xs)
    for m in net:
        if isinstance(m, bg.EventLinear):
            m.learn_thresholds()
    thresholds = [p for n, p in net.named_parameters() if "threshold" in n]
    for n, p in net.named_parameters():
        p.requires_grad_("threshold" in n)
    weights = {n: p.detach().clone() for n, p in net.named_parameters() if "threshold" not in n}
    opt = torch.optim.Adam(thresholds, lr=0.1)
    for _ in range(10):
        _, tape = rollout(net, xs)
        opt.zero_grad()
        tape.penalty().backward()
        opt.step()
    _, after = bg.simulate(net, xs)
    for n, p in net.named_parameters():
        if n in weights:
            assert torch.equal(p, weights[n])  # the model itself is fixed
    ev = lambda r: r.total["input_events"] + r.total["latent_events"]  # noqa: E731
    assert ev(after) < 0.8 * ev(before)
    assert after.total["synops"] < 0.8 * before.total["synops"]


def test_rollout_forward_matches_simulate(rng):
    net, xs = _net(0.2), _stream()
    for m in net:
        if isinstance(m, bg.EventLinear):
            m.learn_thresholds()
    out, tape = rollout(net, xs)
    ys, rep = bg.simulate(net, xs)
    assert torch.allclose(out.detach(), ys, atol=1e-4)
    assert float(tape.synops.detach().mean()) == pytest.approx(rep.total["synops"], rel=1e-5)
    assert tape.dense_synops == pytest.approx(rep.total["dense_synops"])


def test_learn_freeze_round_trip_and_setter():
    layer = bg.EventLinear(5, 4, 2, threshold=0.2, latent_threshold=0.1)
    layer.learn_thresholds()
    assert torch.allclose(layer.threshold, torch.full((5,), 0.2), atol=1e-5)
    layer.threshold = 0.4  # assigning a value keeps the learned parameter in step
    assert torch.allclose(layer.threshold, torch.full((5,), 0.4), atol=1e-5)
    layer.freeze_thresholds()
    assert not any("threshold" in n for n, _ in layer.named_parameters())
    assert torch.allclose(layer.threshold, torch.full((5,), 0.4), atol=1e-5)


def test_events_in_loop_restores_forward_and_checks_shape():
    net = _net()
    with events_in_loop(net), pytest.raises(ValueError, match="once per time step"):
        net(torch.zeros(2, 3, 6))
    assert "forward" not in net[0].__dict__
    with pytest.raises(TypeError, match="nn.Module"):
        events_in_loop("not a model")


def test_penalty_budget_frees_activity_under_it(rng):
    net, xs = _net(0.05), _stream(T=10, B=4)
    for m in net:
        if isinstance(m, bg.EventLinear):
            m.learn_thresholds()
    _, tape = rollout(net, xs)
    activity = tape.penalty()
    assert float(activity) == pytest.approx(1 / tape.ratio())
    under = tape.penalty(budget=0.5 * float(activity))
    assert float(under) == pytest.approx(0.5 * float(activity))
    over = tape.penalty(budget=min(0.99, 2 * float(activity)))
    assert float(over) == 0.0
    under.backward()  # the hinge keeps the surrogate gradient while above the budget
    assert float(net[0].threshold_raw.grad.abs().sum()) > 0
    for bad in (-0.1, 1.0, "0.1", True):
        with pytest.raises(ValueError, match=r"budget=.*relative activity in \[0, 1\)"):
            tape.penalty(budget=bad)
