"""Delta GRU / LSTM on factored weights (DESIGN §2c): the torch reference of one step.

A recurrent layer has two factored weights, ``W_ih ≈ U_x diag(s_x) V_xᵀ`` (``G·H × n``) and
``W_hh ≈ U_h diag(s_h) V_hᵀ`` (``G·H × H``), ``G = 3`` gates for a GRU and 4 for an LSTM in
torch's order (GRU ``r, z, n``; LSTM ``i, f, g, o``). Each factor is an event layer of DESIGN §2
(:func:`~braingate.functional.event_step.event_step`): its output is a *pre-activation memory*
``m_x ≈ W_ih x̂ + b_ih`` fed with the input, ``m_h ≈ W_hh ĥ + b_hh`` fed with the previous hidden
state, each kept up to date by the deltas of the inputs and latent units that crossed their
thresholds. The gates are then computed densely from the memories (elementwise work, counted
apart from synops), so with θ = θ_h = θ_z = 0 a step equals ``torch.nn.GRUCell`` /
``nn.LSTMCell``.

States are NamedTuples (:class:`DeltaGRUState`, :class:`DeltaLSTMState`); every function is pure.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from braingate.functional.event_step import event_step, resync
from braingate.functional.lowrank import lowrank_linear
from braingate.state import EventState, StepCounts

__all__ = [
    "GATES",
    "NEURON_OPS",
    "DeltaGRUState",
    "DeltaLSTMState",
    "DeltaStep",
    "FactorParams",
    "delta_rnn_init",
    "delta_rnn_resync",
    "delta_rnn_step",
    "dense_rnn_layer",
    "gru_update",
    "lstm_update",
]

#: Gates per cell type (rows of ``W_ih`` / ``W_hh`` are ``GATES[cell]·H``).
GATES = {"gru": 3, "lstm": 4}

#: Elementwise multiplications of the gate update per hidden unit (``neuron_ops / H``), as
#: NeuroBench counts them for ``nn.GRUCell`` (``r⊙n_h``, ``(1−z)⊙n``, ``z⊙h``) and ``nn.LSTMCell``
#: (``f⊙c``, ``i⊙g``, ``o⊙tanh c``); nonlinearities are not counted (NeuroBench does not either).
NEURON_OPS = {"gru": 3, "lstm": 3}


class FactorParams(NamedTuple):
    """One factored weight of a recurrent layer.

    Attributes:
        U: ``(G·H, R)``. s: ``(R,)``. V: ``(n, R)`` (``n`` = input or hidden size).
        bias: ``(G·H,)`` or None.
        gate: bool rank mask ``(R,)`` or per sample ``(B, R)``.
    """

    U: Tensor
    s: Tensor
    V: Tensor
    bias: Tensor | None
    gate: Tensor


class DeltaGRUState(NamedTuple):
    """State of one delta-GRU layer, per sample.

    Attributes:
        x: event state of the input factor (``x̂``, its latents, ``m_x − b_ih``, gate).
        h: event state of the hidden factor (``ĥ``, its latents, ``m_h − b_hh``, gate).
        hidden: ``h_{t−1}`` ``(B, H)``: the exact trajectory of the layer (not ``ĥ``).
    """

    x: EventState
    h: EventState
    hidden: Tensor


class DeltaLSTMState(NamedTuple):
    """State of one delta-LSTM layer: as :class:`DeltaGRUState` plus the cell ``c_{t−1}``."""

    x: EventState
    h: EventState
    hidden: Tensor
    cell: Tensor


class DeltaStep(NamedTuple):
    """What one step returns.

    Attributes:
        out: ``h_t`` ``(B, H)``.
        state: the new layer state.
        x_counts, h_counts: :class:`~braingate.state.StepCounts` of the input and hidden
            factors (per sample).
        events: bool (float under a surrogate) masks ``(input (B, n), hidden (B, H),
            input latents (B, R_x), hidden latents (B, R_h))``.
    """

    out: Tensor
    state: DeltaGRUState | DeltaLSTMState
    x_counts: StepCounts
    h_counts: StepCounts
    events: tuple[Tensor, Tensor, Tensor, Tensor]


def gru_update(mx: Tensor, mh: Tensor, h: Tensor) -> Tensor:
    r"""GRU update from the pre-activation memories (biases included), torch's gate order.

    .. math::
        r = σ(m_{x,r} + m_{h,r}),\quad z = σ(m_{x,z} + m_{h,z}),\quad
        n = \tanh(m_{x,n} + r ⊙ m_{h,n}),\quad h' = (1 − z) ⊙ n + z ⊙ h

    Shape: ``mx``, ``mh`` ``(B, 3H)``; ``h`` ``(B, H)`` -> ``(B, H)``.
    """
    xr, xz, xn = mx.chunk(3, dim=-1)
    hr, hz, hn = mh.chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    return (1 - z) * n + z * h


def lstm_update(mx: Tensor, mh: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    r"""LSTM update from the pre-activation memories (biases included), torch's gate order.

    .. math::
        i, f, g, o = σ, σ, \tanh, σ\ (m_x + m_h),\quad c' = f ⊙ c + i ⊙ g,\quad
        h' = o ⊙ \tanh c'

    Shape: ``mx``, ``mh`` ``(B, 4H)``; ``c`` ``(B, H)`` -> ``(h', c')`` each ``(B, H)``.
    """
    i, f, g, o = (mx + mh).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def _zero_factor(batch: int, n: int, rows: int, gate: Tensor, dtype, device) -> EventState:
    return EventState.zeros(batch, n, rows, gate, dtype, device)


def delta_rnn_init(
    cell: str,
    batch: int,
    ih: FactorParams,
    hh: FactorParams,
    hidden: Tensor | None = None,
    cell_state: Tensor | None = None,
) -> DeltaGRUState | DeltaLSTMState:
    """The state of a layer that has seen nothing: references and memories zero (so
    ``m_x = b_ih``, ``m_h = b_hh``), ``h_{−1}`` = ``hidden`` (default zeros), and for an LSTM
    ``c_{−1}`` = ``cell_state`` (default zeros). A nonzero ``hidden`` is sent by the first step's
    hidden sigma-delta like any other change.
    """
    n, H, rows = ih.V.shape[0], hh.V.shape[0], ih.U.shape[0]
    dt, dev = ih.U.dtype, ih.U.device
    x = _zero_factor(batch, n, rows, ih.gate, dt, dev)
    h = _zero_factor(batch, H, rows, hh.gate, dt, dev)
    hid = torch.zeros(batch, H, dtype=dt, device=dev) if hidden is None else hidden
    if cell == "gru":
        return DeltaGRUState(x, h, hid)
    c = torch.zeros(batch, H, dtype=dt, device=dev) if cell_state is None else cell_state
    return DeltaLSTMState(x, h, hid, c)


def _memory(y: Tensor, bias: Tensor | None) -> Tensor:
    return y if bias is None else y + bias


def delta_rnn_step(
    cell: str,
    x: Tensor,
    state: DeltaGRUState | DeltaLSTMState,
    ih: FactorParams,
    hh: FactorParams,
    threshold: float | Tensor = 0.0,
    hidden_threshold: float | Tensor = 0.0,
    latent_threshold_ih: float | Tensor = 0.0,
    latent_threshold_hh: float | Tensor = 0.0,
) -> DeltaStep:
    r"""One delta-RNN step of one layer (DESIGN §2c).

    .. math::
        m_h &\mathrel{+}= \text{event step of } W_{hh} \text{ on } h_{t−1}
              \ (θ_h, θ_z),\qquad
        m_x \mathrel{+}= \text{event step of } W_{ih} \text{ on } x_t\ (θ, θ_z)

        h_t &= \mathrm{GRU}(m_x + b_{ih},\ m_h + b_{hh},\ h_{t−1})
        \quad\text{or}\quad (h_t, c_t) = \mathrm{LSTM}(m_x + b_{ih},\ m_h + b_{hh},\ c_{t−1})

    Per step and sample: ``|m_x − W_ih,g x_t − b_ih|∞ ≤ θ‖U_x diag(s_x⊙g) V_xᵀ‖∞ +
    θ_z‖U_x diag(s_x⊙g)‖∞`` and the same for ``m_h`` against ``W_hh,g h_{t−1}`` with θ_h (row-sum
    norms, no growth over time). ``synops = |E_x|·R_x + |L_x|·G·H + |E_h|·R_h + |L_h|·G·H``.

    Args:
        cell: ``"gru"`` or ``"lstm"``.
        x: input ``(B, n)``.
        state: the layer's :class:`DeltaGRUState` / :class:`DeltaLSTMState`.
        ih, hh: the input and hidden factors (:class:`FactorParams`).
        threshold: θ of the input (scalar or ``(n,)``); hidden_threshold: θ_h (scalar or
            ``(H,)``); latent_threshold_ih / _hh: θ_z of each factor (scalar or ``(R,)``).

    Returns:
        :class:`DeltaStep`.
    """
    yh, sh, ch, (eh, lh) = event_step(state.hidden, state.h, hh.U, hh.s, hh.V, hh.gate,
                                      hidden_threshold, latent_threshold_hh)  # fmt: skip
    yx, sx, cx, (ex, lx) = event_step(x, state.x, ih.U, ih.s, ih.V, ih.gate,
                                      threshold, latent_threshold_ih)  # fmt: skip
    mx, mh = _memory(yx, ih.bias), _memory(yh, hh.bias)
    if cell == "gru":
        h = gru_update(mx, mh, state.hidden)
        new: DeltaGRUState | DeltaLSTMState = DeltaGRUState(sx, sh, h)
    else:
        h, c = lstm_update(mx, mh, state.cell)
        new = DeltaLSTMState(sx, sh, h, c)
    return DeltaStep(h, new, cx, ch, (ex, eh, lx, lh))


def delta_rnn_resync(
    state: DeltaGRUState | DeltaLSTMState, ih: FactorParams, hh: FactorParams
) -> DeltaGRUState | DeltaLSTMState:
    """Both factors' accumulators recomputed exactly from their references
    (:func:`~braingate.functional.event_step.resync`); the trajectory is unchanged."""
    x = resync(state.x, ih.U, ih.s, ih.V)
    h = resync(state.h, hh.U, hh.s, hh.V)
    return state._replace(x=x, h=h)


def dense_rnn_layer(
    cell: str,
    xs: Tensor,
    ih: FactorParams,
    hh: FactorParams,
    h0: Tensor,
    c0: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    r"""Dense (reference) path of one layer over a whole sequence.

    .. math::
        m_{x,t} = U_x\,\mathrm{diag}(s_x⊙g)\,V_x^\top x_t + b_{ih}\ \text{(one GEMM for all t)},
        \quad m_{h,t} = W_{hh,g} h_{t−1} + b_{hh},\quad h_t = \mathrm{GRU}/\mathrm{LSTM}(\dots)

    Shape: ``xs`` ``(T, B, n)``, ``h0`` / ``c0`` ``(B, H)`` -> ``(out (T, B, H), h_T, c_T)``
    (``c_T`` None for a GRU).
    """
    mx_all = lowrank_linear(xs, ih.U, ih.s, ih.V, ih.bias, ih.gate)
    h, c, outs = h0, c0, []
    for t in range(xs.shape[0]):
        mh = lowrank_linear(h, hh.U, hh.s, hh.V, hh.bias, hh.gate)
        if cell == "gru":
            h = gru_update(mx_all[t], mh, h)
        else:
            h, c = lstm_update(mx_all[t], mh, c)
        outs.append(h)
    out = torch.stack(outs) if outs else xs.new_zeros(0, xs.shape[1], h0.shape[-1])
    return out, h, c
