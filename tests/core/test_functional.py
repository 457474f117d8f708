"""Golden values and invariants of the pure functions."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from braingate.functional import (
    block_importance,
    blocks_to_units,
    first_k_blocks,
    lowrank_linear,
    masked_weight,
    sigma_delta,
    svd_factorize,
)


def test_sigma_delta_golden_values():
    ref = torch.tensor([0.0, 0.0, 1.0, 2.0])
    x = torch.tensor([0.4, 0.6, 1.5, 1.0])
    delta, events, new_ref = sigma_delta(x, ref, 0.5)
    assert events.tolist() == [False, True, False, True]
    assert torch.equal(delta, torch.tensor([0.0, 0.6, 0.0, -1.0]))
    assert torch.equal(new_ref, torch.tensor([0.0, 0.6, 1.0, 1.0]))


def test_sigma_delta_carries_the_residual_of_a_slow_ramp():
    # 0.1 per step with θ = 0.5: a step-difference encoder never fires; last-sent reference does.
    ref, fired = torch.zeros(1), []
    for t in range(1, 51):
        x = torch.tensor([0.1 * t])
        _, ev, ref = sigma_delta(x, ref, 0.5)
        fired.append(bool(ev))
        assert float((x - ref).abs()) <= 0.5 + 1e-6
    # |x − x̂| must exceed 0.5, so it fires every 6 steps: t = 6, 12, …, 48.
    assert [t + 1 for t, f in enumerate(fired) if f] == [6, 12, 18, 24, 30, 36, 42, 48]
    assert abs(float(ref) - 4.8) < 1e-5


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 6), st.floats(0.0, 1.0), st.integers(0, 10_000))
def test_sigma_delta_invariant(n_steps, theta, seed):
    g = torch.Generator().manual_seed(seed)
    ref = torch.zeros(3, 5)
    for _ in range(n_steps):
        x = torch.randn(3, 5, generator=g)
        delta, ev, ref = sigma_delta(x, ref, theta)
        assert bool(((x - ref).abs() <= theta).all())
        assert bool((delta[~ev] == 0).all())


def test_lowrank_linear_matches_explicit_weight(rng):
    U, s, V = torch.randn(6, 4), torch.rand(4), torch.randn(5, 4)
    b, x = torch.randn(6), torch.randn(3, 2, 5)
    gate = torch.tensor([[1, 0, 1, 1], [0, 1, 1, 0]], dtype=torch.bool)
    y = lowrank_linear(x, U, s, V, b, gate)
    W = masked_weight(U, s, V, gate)  # (2, 6, 5)
    ref = torch.einsum("bmn,tbn->tbm", W, x) + b
    assert torch.allclose(y, ref, atol=1e-5)


def test_svd_factorize_error_and_full_rank():
    w = torch.randn(8, 5, dtype=torch.float64)
    U, s, V, err = svd_factorize(w, 5)
    assert err < 1e-12 and torch.allclose(U @ torch.diag(s) @ V.T, w)
    U, s, V, err = svd_factorize(w, 2)
    direct = float(torch.linalg.norm(w - U @ torch.diag(s) @ V.T) / torch.linalg.norm(w))
    assert abs(err - direct) < 1e-9 and err > 0.1


def test_block_helpers():
    s = torch.tensor([1.0, 1.0, 3.0, 3.0, 2.0, 2.0])
    imp = block_importance(s, 3)
    assert imp.tolist() == [2.0, 18.0, 8.0]
    assert first_k_blocks(imp, 2).tolist() == [False, True, True]
    units = blocks_to_units(torch.tensor([[True, False, True]]), 6)
    assert units.tolist() == [[True, True, False, False, True, True]]
