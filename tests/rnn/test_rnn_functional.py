"""The torch reference of the delta GRU / LSTM step (braingate.functional.rnn_events)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from braingate.functional.lowrank import masked_weight, svd_factorize
from braingate.functional.rnn_events import (
    FactorParams,
    delta_rnn_init,
    delta_rnn_step,
    gru_update,
    lstm_update,
)

CELLS = {"gru": (nn.GRUCell, 3), "lstm": (nn.LSTMCell, 4)}


def full_rank(weight, bias, batch=None):
    U, s, V, _ = svd_factorize(weight, min(weight.shape))
    g = torch.ones(s.shape[0], dtype=torch.bool)
    return FactorParams(U, s, V, bias, g if batch is None else g.expand(batch, -1))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_updates_equal_torch_cells(cell):
    torch.manual_seed(0)
    cls, G = CELLS[cell]
    ref = cls(5, 4).double()
    x, h, c = torch.randn(3, 5).double(), torch.randn(3, 4).double(), torch.randn(3, 4).double()
    mx = x @ ref.weight_ih.t() + ref.bias_ih
    mh = h @ ref.weight_hh.t() + ref.bias_hh
    if cell == "gru":
        assert torch.allclose(gru_update(mx, mh, h), ref(x, h), atol=1e-12)
    else:
        h1, c1 = lstm_update(mx, mh, c)
        r1, rc = ref(x, (h, c))
        assert torch.allclose(h1, r1, atol=1e-12) and torch.allclose(c1, rc, atol=1e-12)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_zero_threshold_step_equals_torch_cell_over_a_sequence(cell):
    torch.manual_seed(1)
    cls, _ = CELLS[cell]
    ref = cls(6, 5).double()
    ih = full_rank(ref.weight_ih, ref.bias_ih, 2)
    hh = full_rank(ref.weight_hh, ref.bias_hh, 2)
    state = delta_rnn_init(cell, 2, ih, hh)
    h = torch.zeros(2, 5).double()
    c = torch.zeros(2, 5).double()
    for _ in range(20):
        x = torch.randn(2, 6).double()
        step = delta_rnn_step(cell, x, state, ih, hh)
        state = step.state
        if cell == "gru":
            h = ref(x, h)
        else:
            h, c = ref(x, (h, c))
        assert torch.allclose(step.out, h, atol=1e-10)


def _rowsum(W):
    return W.abs().sum(-1)


@settings(max_examples=25, deadline=None)
@given(
    cell=st.sampled_from(["gru", "lstm"]),
    n=st.integers(1, 8),
    H=st.integers(1, 6),
    theta=st.floats(0.0, 0.5),
    theta_h=st.floats(0.0, 0.5),
    theta_z=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**16),
)
def test_pre_activation_bound_holds_at_every_step(cell, n, H, theta, theta_h, theta_z, seed):
    """|m_x − W_ih x_t − b_ih|∞ ≤ θ‖W_ih‖∞ + θ_z‖U_x diag s_x‖∞ and likewise for m_h against
    W_hh h_{t−1} (the event trajectory's own previous hidden state), every step (DESIGN §2c)."""
    g = torch.Generator().manual_seed(seed)
    G = 3 if cell == "gru" else 4
    rank_x, rank_h = max(1, min(n, G * H) - 1), max(1, H - 1)

    def factor(cols, r):
        U = torch.randn(G * H, r, generator=g, dtype=torch.float64)
        V = torch.randn(cols, r, generator=g, dtype=torch.float64)
        s = torch.rand(r, generator=g, dtype=torch.float64)
        b = torch.randn(G * H, generator=g, dtype=torch.float64)
        return FactorParams(U, s, V, b, torch.ones(3, r, dtype=torch.bool))

    ih, hh = factor(n, rank_x), factor(H, rank_h)
    W_ih, W_hh = masked_weight(ih.U, ih.s, ih.V), masked_weight(hh.U, hh.s, hh.V)
    bound_x = theta * _rowsum(W_ih) + theta_z * _rowsum(ih.U * ih.s)
    bound_h = theta_h * _rowsum(W_hh) + theta_z * _rowsum(hh.U * hh.s)
    state = delta_rnn_init(cell, 3, ih, hh)
    x = torch.zeros(3, n, dtype=torch.float64)
    for _ in range(15):
        x = x + 0.4 * torch.randn(3, n, generator=g, dtype=torch.float64)
        h_prev = state.hidden
        step = delta_rnn_step(cell, x, state, ih, hh, theta, theta_h, theta_z, theta_z)
        state = step.state
        mx = state.x.y + ih.bias
        mh = state.h.y + hh.bias
        assert bool(((mx - (x @ W_ih.t() + ih.bias)).abs() <= bound_x + 1e-9).all())
        assert bool(((mh - (h_prev @ W_hh.t() + hh.bias)).abs() <= bound_h + 1e-9).all())
