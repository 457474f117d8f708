"""Training DynamicLowRankLayer like nn.Linear: canonical re-factoring, nested ranks, capacity,
and the scorer's own objective."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from braingate.nn.dynamic import DynamicLowRankLayer, _ScorerObjective, canonical_factors
from braingate.nn.loraven import LoRAven
from braingate.scheduling import FixedRankScheduler, MagnitudeScorer


def _x(rng, b=24, n=20):
    return torch.from_numpy(rng.normal(size=(b, n))).float()


def _scramble(layer: DynamicLowRankLayer) -> None:
    """Factors that are neither orthonormal nor sorted (as after training)."""
    with torch.no_grad():
        b = layer.base
        b.U.add_(0.3 * torch.randn_like(b.U))
        b.V.add_(0.3 * torch.randn_like(b.V))
        b.s.copy_(torch.rand_like(b.s) + 0.1)


def test_canonical_factors_keep_the_product_and_give_best_truncations(rng):
    layer = DynamicLowRankLayer(20, 12, r_max=8, r_min=2)
    _scramble(layer)
    b = layer.base
    with torch.no_grad():
        w = (b.U * b.s) @ b.V.t()
    U, s, V = canonical_factors(b.U, b.s, b.V)
    torch.testing.assert_close((U * s) @ V.t(), w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(U.t() @ U, torch.eye(8), rtol=0, atol=1e-5)
    torch.testing.assert_close(V.t() @ V, torch.eye(8), rtol=0, atol=1e-5)
    assert (s[:-1] >= s[1:]).all() and (s >= 0).all()
    sv = torch.linalg.svdvals(w.double())
    for r in (1, 3, 5):  # Eckart–Young: a prefix is the best rank-r approximation
        err = torch.linalg.matrix_norm((w - (U[:, :r] * s[:r]) @ V[:, :r].t()).double())
        assert float(err) == pytest.approx(float(sv[r:].pow(2).sum().sqrt()), rel=1e-4)
    # canonical factors are a fixed point (signs follow the old columns)
    U2, s2, V2 = canonical_factors(U, s, V)
    torch.testing.assert_close(U2, U, rtol=0, atol=1e-5)
    torch.testing.assert_close(V2, V, rtol=0, atol=1e-5)


def test_training_runs_at_capacity_and_inference_truncates_the_canonical_copy(rng):
    layer = DynamicLowRankLayer(
        20, 12, r_max=6, r_min=2, num_gate_blocks=5, capacity=10, nested=0.0
    )
    x = _x(rng)
    y, ranks = layer(x)
    assert (layer.last_train_ranks == 10).all()  # trains wide
    assert ((ranks >= 2) & (ranks <= 6)).all()  # returns the scheduler's plan
    _scramble(layer)  # as after training: neither orthonormal nor sorted
    b = layer.base
    before = [p.detach().clone() for p in (b.U, b.s, b.V)]
    layer.eval()
    layer.scheduler = FixedRankScheduler(2, 6, 6)
    with torch.no_grad():
        y6, r = layer(x)
    assert (r == 6).all()
    # the parameters are untouched (an optimizer's state still describes them) ...
    assert all(torch.equal(p, q) for p, q in zip(before, (b.U, b.s, b.V)))
    # ... and the output is the best rank-6 truncation of the weight
    with torch.no_grad():
        u, sv, vh = torch.linalg.svd((b.U * b.s) @ b.V.t())
        w6 = (u[:, :6] * sv[:6]) @ vh[:6]
    torch.testing.assert_close(y6, x @ w6.t() + b.bias, rtol=1e-4, atol=1e-4)


def test_the_training_basis_may_lag_but_inference_is_exact(rng):
    layer = DynamicLowRankLayer(20, 12, r_max=8, r_min=2, num_gate_blocks=4, nested=0.5)
    opt = torch.optim.SGD(layer.parameters(), lr=0.05)
    x = _x(rng)
    for _ in range(3):  # fewer steps than BASIS_EVERY: training reads a stale basis
        y, _ = layer(x)
        opt.zero_grad()
        y.pow(2).mean().backward()
        opt.step()
    layer(x)
    assert layer._canon_age == 3 and layer._canon[0] != layer._versions()
    b = layer.base
    Uc, sc, Vc = layer.canonical()  # inference: recomputed for the current factors
    with torch.no_grad():
        torch.testing.assert_close((Uc * sc) @ Vc.t(), (b.U * b.s) @ b.V.t(), rtol=1e-5, atol=1e-5)


def test_event_mode_canonicalises_the_base_once_and_matches_dense(rng):
    layer = DynamicLowRankLayer(
        20, 12, r_max=8, r_min=2, num_gate_blocks=4, scorer=MagnitudeScorer()
    )
    _scramble(layer)
    layer.eval()
    x = _x(rng, 4)
    with torch.no_grad():
        y_dense, r1 = layer(x)
        layer.scorer.running_mean.zero_(), layer.scorer.seen.zero_()
        layer.execution = "event"
        y_event, r2 = layer(x)
    assert torch.equal(r1, r2)
    torch.testing.assert_close(y_event, y_dense, rtol=1e-4, atol=1e-4)
    b = layer.base
    assert (b.s[:-1] >= b.s[1:]).all()  # the base now holds canonical factors
    assert layer._base_canonical == layer._versions()


def test_forward_ranks_training_keeps_the_raw_prefixes(rng):
    layer = DynamicLowRankLayer(20, 12, r_max=8, r_min=2, num_gate_blocks=4)
    assert layer.prefixes == "canonical"
    layer.forward_ranks(_x(rng), [2, 8]).sum().backward()
    assert layer.prefixes == "raw"
    _scramble(layer)
    layer.eval()
    layer.scheduler = FixedRankScheduler(2, 8, 4)
    x = _x(rng, 3)
    with torch.no_grad():
        y, _ = layer(x)
        torch.testing.assert_close(y, layer.forward_ranks(x, [4])[:, 0], rtol=1e-4, atol=1e-5)
    assert layer.state_dict()["_extra_state"]["prefixes"] == "raw"


def test_nested_fraction_trains_prefix_ranks(rng):
    torch.manual_seed(0)
    layer = DynamicLowRankLayer(20, 12, r_max=8, r_min=2, num_gate_blocks=4, nested=0.5)
    layer(_x(rng, b=400))
    used = layer.last_train_ranks
    ends = set(layer.ends.tolist())
    assert set(used.tolist()) <= ends | {8}
    share = float((used < 8).float().mean())
    assert 0.25 < share < 0.5  # half the samples are nested, and some of those land on r_max


def test_a_layer_applied_twice_in_one_graph_backpropagates(rng):
    """Nothing edits the factors between forward and backward (e.g. unrolled over time)."""
    layer = DynamicLowRankLayer(20, 12, r_max=8, r_min=2, nested=0.5)
    layer.BASIS_EVERY = 1
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    x = _x(rng)
    for _ in range(4):
        h, _ = layer(x)
        y, _ = layer(torch.cat([h, h[:, :8]], dim=1))  # the same layer again, same graph
        opt.zero_grad()
        y.pow(2).mean().backward()
        opt.step()
    assert layer._canon_age == 0  # the basis was refreshed at every step


def test_event_mode_matches_dense_with_capacity_above_r_max(rng):
    layer = LoRAven(24, 16, mode="balanced")
    assert layer.layer.capacity == 16 > layer.max_rank
    x = _x(rng, 4, 24)
    layer.eval()
    with torch.no_grad():
        y_dense = layer(x)
        r1 = layer.get_rank_per_sample().clone()
        layer.layer.execution = "event"
        y_event = layer(x)
    assert torch.equal(r1, layer.get_rank_per_sample())
    torch.testing.assert_close(y_event, y_dense, rtol=1e-4, atol=1e-4)


def test_scorer_objective_gradient_is_the_quantile_regression():
    y = torch.zeros(4, 3, requires_grad=True)
    scores = torch.tensor([0.2, 0.9, 0.5, 0.5], requires_grad=True)
    delta = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 2.0, 0], [0, 0, -1.0]])
    g = torch.tensor([[-1.0, 0, 0], [5.0, 0, 0], [0, -0.1, 0], [0, 0, -3.0]])
    out = _ScorerObjective.apply(y, scores, delta)
    (out * g).sum().backward()
    torch.testing.assert_close(y.grad, g)  # identity for the task gradient
    # first-order loss increase of dropping to r_min: -g·δ = [1, 0, 0.2, -3] -> quantiles
    target = torch.tensor([3.0, 1.0, 2.0, 0.0]) / 3
    torch.testing.assert_close(scores.grad, (scores.detach() - target) / 4)


def test_scorer_learns_which_samples_need_rank():
    """Group B's loss depends on the upper units, group A's does not: the scorer must rank
    B above A after training on the layer's own objective (factors frozen)."""
    torch.manual_seed(0)
    layer = DynamicLowRankLayer(6, 6, r_max=6, r_min=2, num_gate_blocks=5, nested=0.0)
    with torch.no_grad():
        layer.base.U.copy_(torch.eye(6)), layer.base.V.copy_(torch.eye(6))
        layer.base.s.fill_(1.0), layer.base.bias.zero_()
    for p in layer.base.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(layer.scorer.parameters(), lr=1e-2)

    def batch(n=64):
        a = torch.randn(n, 6) * torch.tensor([1.0, 0.1, 0, 0, 0, 0])  # lives in units 0-1
        b = torch.randn(n, 6) * torch.tensor([1.0, 1.0, 1, 1, 1, 1])  # needs units 2-5
        return torch.cat([a, b]), torch.cat([torch.zeros(n), torch.ones(n)])

    for _ in range(150):
        x, _ = batch()
        y, _ = layer(x)
        loss = F.mse_loss(y, 2 * x)  # targets the layer cannot reach: the gradient stays alive
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, group = batch(200)
    layer.eval()
    with torch.no_grad():
        layer(x)
    c = layer.last_scores
    auc = float((c[group == 1][:, None] > c[group == 0][None, :]).float().mean())
    assert auc > 0.9


def test_magnitude_scorer_layer_trains_without_the_objective(rng):
    layer = DynamicLowRankLayer(20, 12, r_max=8, r_min=2, scorer=MagnitudeScorer())
    y, _ = layer(_x(rng))
    y.pow(2).mean().backward()  # statistic scorers have no parameters to train
    assert layer.base.U.grad is not None


def test_layer_options_errors():
    with pytest.raises(ValueError, match="capacity=5 must be an int in \\[r_max=6"):
        DynamicLowRankLayer(20, 12, r_max=6, num_gate_blocks=2, capacity=5)
    with pytest.raises(ValueError, match="nested=1.5 must be a fraction"):
        DynamicLowRankLayer(20, 12, r_max=6, num_gate_blocks=2, nested=1.5)
    with pytest.raises(ValueError, match="gate_unit=4 must be a positive divisor"):
        DynamicLowRankLayer(20, 12, r_max=6, num_gate_blocks=2, gate_unit=4)
    with pytest.raises(ValueError, match="factor_scale=0 must be a positive number"):
        DynamicLowRankLayer(20, 12, r_max=6, num_gate_blocks=2, factor_scale=0)
    layer = DynamicLowRankLayer(20, 12, r_max=6, num_gate_blocks=2, factor_scale=2.0)
    torch.testing.assert_close(layer.base.U.norm(dim=0), torch.full((6,), 2.0))
    assert LoRAven(20, 12).layer.factor_scale == 1.75
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DynamicLowRankLayer(
            20, 12, r_max=6, r_min=6, num_gate_blocks=1
        )  # one rank: one block, no warning


def test_inference_follows_fused_optimizer_steps_and_data_edits(rng):
    layer = DynamicLowRankLayer(20, 12, r_max=8, r_min=8, num_gate_blocks=1, nested=0.0)
    layer.eval()
    x = _x(rng, 5)
    with torch.no_grad():
        before, _ = layer(x)
    opt = torch.optim.Adam(layer.parameters(), lr=0.1, fused=True)  # moves no version counter
    layer.train()
    y, _ = layer(x)
    y.pow(2).mean().backward()
    opt.step()
    layer.eval()
    b = layer.base
    with torch.no_grad():
        after, _ = layer(x)
        w = (b.U * b.s) @ b.V.t()
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, x @ w.t() + b.bias, rtol=1e-4, atol=1e-4)
    b.s.data.mul_(2.0)  # invisible to every counter: refresh() says so
    layer.refresh()
    with torch.no_grad():
        torch.testing.assert_close(layer(x)[0], x @ (2 * w).t() + b.bias, rtol=1e-4, atol=1e-4)
