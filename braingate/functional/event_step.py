"""The event-driven step of a gated low-rank layer (pure torch reference) and its exact re-sync."""

from __future__ import annotations

from torch import Tensor

from braingate.functional.events import sigma_delta
from braingate.state import EventState, StepCounts

__all__ = ["event_step", "resync"]


def event_step(
    x: Tensor,
    state: EventState,
    U: Tensor,
    s: Tensor,
    V: Tensor,
    gate: Tensor,
    threshold: float | Tensor = 0.0,
    latent_threshold: float | Tensor = 0.0,
) -> tuple[Tensor, EventState, StepCounts, tuple[Tensor, Tensor]]:
    r"""Advance one time step, recomputing only what changed (DESIGN §2).

    .. math::
        \text{gate off: } y \mathrel{-}= U_b(s_b ⊙ \hat z_b),\qquad
        \text{gate on: } z_b = \hat z_b = V_b^\top \hat x,\ y \mathrel{+}= U_b(s_b ⊙ \hat z_b)

        Δ = x - \hat x,\ E = \{i: |Δ_i| > θ\},\ z \mathrel{+}= V_{E,:}^\top Δ_E

        L = \{j : g_j,\ |z_j - \hat z_j| > θ_z\},\ y \mathrel{+}= U_{:,L}\,(s_L ⊙ (z_L - \hat z_L))

    Bound (row-sum norms, no growth over time, as both references are last-sent values):
    ``|y − W_g x|∞ ≤ θ‖U diag(s⊙g) Vᵀ‖∞ + θ_z‖U diag(s⊙g)‖∞``.

    Args:
        x: input of this step ``(B, n)``.
        state: :class:`~braingate.state.EventState` of the previous step.
        U, s, V: factors ``(m, R)``, ``(R,)``, ``(n, R)``.
        gate: bool rank mask ``(R,)`` or ``(B, R)``.
        threshold: input θ (scalar or ``(n,)``); latent_threshold: θ_z (scalar or ``(R,)``).

    Returns:
        ``(y, new_state, counts, (input_events, latent_events))``: output without bias
        ``(B, m)``, the new state, the per-sample :class:`~braingate.state.StepCounts`, and the
        bool event masks ``(B, n)`` and ``(B, R)``.
    """
    n, m = V.shape[0], U.shape[0]
    gate = gate.expand_as(state.gate)
    Us_t = (U * s).t()
    on, off = gate & ~state.gate, state.gate & ~gate
    y = state.y - (state.z_hat * off) @ Us_t
    if bool(on.any()):
        fresh = state.x_hat @ V
        z, z_hat = fresh.where(on, state.z), fresh.where(on, state.z_hat)
        y = y + (z_hat * on) @ Us_t
    else:
        z, z_hat = state.z, state.z_hat
    delta, in_events, x_hat = sigma_delta(x, state.x_hat, threshold)
    z = z + (delta @ V) * gate
    dz, lat_events, z_hat = sigma_delta(z, z_hat, latent_threshold, active=gate)
    y = y + dz @ Us_t
    ie, le, active = in_events.sum(-1), lat_events.sum(-1), gate.sum(-1)
    counts = StepCounts(
        input_events=ie,
        latent_events=le,
        synops=ie * active + le * m,
        gate_ops=on.sum(-1) * (n + m) + off.sum(-1) * m,
        active_rank=active,
    )
    return y, EventState(x_hat, z, z_hat, y, gate.clone()), counts, (in_events, lat_events)


def resync(state: EventState, U: Tensor, s: Tensor, V: Tensor) -> EventState:
    r"""Recompute the accumulators exactly from the transmitted references.

    .. math:: z_g = V_g^\top \hat x,\qquad y = U\,\mathrm{diag}(s ⊙ g)\,\hat z

    ``x̂`` and ``ẑ`` are unchanged, so the error bound is unchanged; only the float rounding that
    incremental updates accumulate is removed. Cost ``(n + m)·R_active`` per sample.
    """
    z = (state.x_hat @ V).where(state.gate, state.z)
    y = (state.z_hat * state.gate * s) @ U.t()
    return EventState(state.x_hat, z, state.z_hat, y, state.gate)
