"""Gated low-rank convolution: dense path, event step (torch reference), re-sync and bound (§2b).

The weight ``W ∈ R^{C_out×C_in×k}`` is seen as ``W_mat = U·diag(s)·Vᵀ`` with
``V ∈ R^{(C_in·∏k)×R}`` (rows in ``(c, k_h, k_w)`` order, as ``W.reshape(C_out, -1)``) and
``U ∈ R^{C_out×R}``: a conv with ``R`` filters (``Vᵀ`` reshaped) followed by a 1×1 conv with
``U·diag(s⊙g)``. Spatial dims: 1 (``(B, C, L)``) or 2 (``(B, C, H, W)``), picked from the input.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from braingate.functional.events import sigma_delta
from braingate.state import StepCounts

__all__ = [
    "ConvEventState",
    "ConvGeometry",
    "conv_error_bound",
    "conv_event_step",
    "conv_lowrank",
    "conv_out_shape",
    "conv_reach",
    "conv_resync",
]

_CONV = {1: F.conv1d, 2: F.conv2d}


class ConvGeometry(NamedTuple):
    """Kernel size, stride, padding and dilation, one int per spatial dim."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]

    @property
    def dims(self) -> int:
        return len(self.kernel_size)

    @property
    def taps(self) -> int:
        """Kernel positions ``∏ k``."""
        return math.prod(self.kernel_size)


class ConvEventState(NamedTuple):
    """State of one event-driven low-rank conv, per sample (NCHW layouts).

    Attributes:
        x_hat: last transmitted input ``(B, C_in, *in)``.
        z: latent accumulator ``V ∗ x̂`` on active channels ``(B, R, *out)``.
        z_hat: last transmitted latent ``(B, R, *out)``.
        y: output without bias ``U·diag(s⊙g)·ẑ`` ``(B, C_out, *out)``.
        gate: latent channels active at the last step ``(B, R)`` bool.
    """

    x_hat: Tensor
    z: Tensor
    z_hat: Tensor
    y: Tensor
    gate: Tensor

    @classmethod
    def zeros(
        cls, x_shape: tuple[int, ...], out_channels: int, out_spatial: tuple[int, ...],
        gate: Tensor, dtype: torch.dtype, device: torch.device,
    ) -> ConvEventState:  # fmt: skip
        """The state of a layer that has seen nothing, for inputs of ``x_shape`` ``(B, C, *in)``."""
        B, R = x_shape[0], gate.shape[-1]
        kw = {"dtype": dtype, "device": device}
        z = torch.zeros(B, R, *out_spatial, **kw)
        return cls(torch.zeros(x_shape, **kw), z, z.clone(),
                   torch.zeros(B, out_channels, *out_spatial, **kw),
                   gate.expand(B, R).clone())  # fmt: skip


def conv_out_shape(in_spatial: tuple[int, ...], geom: ConvGeometry) -> tuple[int, ...]:
    """Output spatial size: ``⌊(n + 2p − d(k − 1) − 1)/s⌋ + 1`` per dim (as ``nn.Conv2d``)."""
    return tuple(
        (n + 2 * p - d * (k - 1) - 1) // s + 1
        for n, k, s, p, d in zip(in_spatial, *geom, strict=True)
    )


def _filters(V: Tensor, in_channels: int, geom: ConvGeometry) -> Tensor:
    """``V (C_in·∏k, R)`` as ``R`` conv filters ``(R, C_in, *k)``."""
    return V.t().reshape(V.shape[1], in_channels, *geom.kernel_size)


def _latent(x: Tensor, V: Tensor, geom: ConvGeometry) -> Tensor:
    """``z = V ∗ x``: ``(N, C_in, *in) -> (N, R, *out)``."""
    conv = _CONV[geom.dims]
    return conv(x, _filters(V, x.shape[1], geom), None, geom.stride, geom.padding, geom.dilation)


def _channels(t: Tensor, dims: int) -> Tensor:
    """A per-channel ``(C,)`` or ``(N, C)`` tensor broadcast over ``dims`` spatial dims."""
    return t.reshape(*t.shape, *([1] * dims))


def _mix(z: Tensor, U: Tensor, scale: Tensor, dims: int) -> Tensor:
    """The 1×1 conv ``U·diag(scale)``: ``(N, R, *out) -> (N, C_out, *out)`` (scale ``(R,)`` or
    ``(N, R)``)."""
    return torch.einsum("or,nr...->no...", U, z * _channels(scale, dims))


def conv_lowrank(
    x: Tensor,
    U: Tensor,
    s: Tensor,
    V: Tensor,
    bias: Tensor | None,
    gate: Tensor | None,
    geom: ConvGeometry,
) -> Tensor:
    r"""Dense path of a gated low-rank conv.

    .. math:: z = V ∗ x,\qquad y = U\,\mathrm{diag}(s ⊙ g)\,z + b

    Args:
        x: ``(N, C_in, *in)`` (frames of a sequence folded into ``N``).
        U, s, V: ``(C_out, R)``, ``(R,)``, ``(C_in·∏k, R)``.
        bias: ``(C_out,)`` or None. gate: None, ``(R,)`` or ``(N, R)`` (bool or float).
        geom: the conv geometry.

    Returns:
        ``(N, C_out, *out)``.
    """
    scale = s if gate is None else s * gate
    y = _mix(_latent(x, V, geom), U, scale, geom.dims)
    return y if bias is None else y + _channels(bias, geom.dims)


def conv_reach(in_spatial: tuple[int, ...], geom: ConvGeometry) -> Tensor:
    r"""Output positions whose receptive field holds each input position, ``(*in)`` int64.

    Per dim, input ``i`` reaches output ``o`` through tap ``k`` when ``o·s − p + k·d = i`` and
    ``0 ≤ o < out``; the count over dims is the product. An input event at ``i`` costs
    ``reach[i]·R_active`` latent MACs.
    """
    out = conv_out_shape(in_spatial, geom)
    per_dim = []
    for n, o, k, s, p, d in zip(in_spatial, out, *geom, strict=True):
        pos = torch.arange(o).unsqueeze(1) * s - p + torch.arange(k).unsqueeze(0) * d
        pos = pos[(pos >= 0) & (pos < n)]
        per_dim.append(torch.bincount(pos, minlength=n))
    r = per_dim[0]
    for q in per_dim[1:]:
        r = r.unsqueeze(-1) * q
    return r


def conv_event_step(
    x: Tensor,
    state: ConvEventState,
    U: Tensor,
    s: Tensor,
    V: Tensor,
    gate: Tensor,
    threshold: float | Tensor,
    latent_threshold: float | Tensor,
    geom: ConvGeometry,
    granularity: str = "element",
) -> tuple[Tensor, ConvEventState, StepCounts, tuple[Tensor, Tensor]]:
    r"""One event step of a gated low-rank conv (DESIGN §2b), pure torch and differentiable.

    .. math::
        \text{gate off: } y \mathrel{-}= U_b(s_b ⊙ \hat z_b),\qquad
        \text{gate on: } z_b = \hat z_b = V_b ∗ \hat x,\ y \mathrel{+}= U_b(s_b ⊙ \hat z_b)

        Δ = x - \hat x,\ E = \{(c, i): |Δ_{c,i}| > θ_c\},\ z \mathrel{+}= V ∗ Δ_E

        L = \{(r, i'): g_r,\ |z - \hat z| > θ_{z,r}\},\
        y[:, i'] \mathrel{+}= U_{:,r}\, s_r (z - \hat z)_{r,i'}

    Bound per output element (row sums over the ``C_in·∏k`` taps, no growth over time):
    ``|y − W_g ∗ x| ≤ θ‖W_g‖_∞ + θ_z‖U diag(s⊙g)‖_∞``.

    Args:
        x: input of this step ``(B, C_in, *in)``.
        state: :class:`ConvEventState` of the previous step.
        U, s, V: factors ``(C_out, R)``, ``(R,)``, ``(C_in·∏k, R)``.
        gate: bool ``(R,)`` or ``(B, R)``.
        threshold: θ ≥ 0, scalar or per input channel ``(C_in,)``.
        latent_threshold: θ_z ≥ 0, scalar or per latent channel ``(R,)``.
        geom: the conv geometry.
        granularity: ``"element"``, or ``"pixel"``: a pixel whose change crosses θ in any
            channel is sent with all its channels (DeltaCNN's rule; no surrogate gradient).

    Returns:
        ``(y, new_state, counts, (input_events, latent_events))``: output without bias
        ``(B, C_out, *out)``, the new state, per-sample :class:`~braingate.state.StepCounts`
        (synops of §2b) and the event masks ``(B, C_in, *in)`` / ``(B, R, *out)``.
    """
    dims = geom.dims
    B = x.shape[0]
    gate = gate.expand(B, -1)
    C_out, R = U.shape
    out_numel = state.y[0, 0].numel()
    on, off = gate & ~state.gate, state.gate & ~gate
    scale = s.expand(B, R)
    y = state.y - _mix(state.z_hat, U, scale * off, dims)
    if bool(on.any()):
        fresh = _latent(state.x_hat, V, geom)
        on_sp = _channels(on, dims)
        z, z_hat = fresh.where(on_sp, state.z), fresh.where(on_sp, state.z_hat)
        y = y + _mix(z_hat, U, scale * on, dims)
    else:
        z, z_hat = state.z, state.z_hat
    th = threshold if not isinstance(threshold, Tensor) or threshold.dim() == 0 else (
        _channels(threshold, dims))  # fmt: skip
    if granularity == "pixel":
        diff = x - state.x_hat
        in_events = (diff.abs() > th).any(1, keepdim=True).expand_as(diff)
        delta, x_hat = diff * in_events, state.x_hat.where(~in_events, x)
    else:
        delta, in_events, x_hat = sigma_delta(x, state.x_hat, th)
    g_sp = _channels(gate, dims)
    z = z + _latent(delta, V, geom) * g_sp
    thz = latent_threshold
    if isinstance(thz, Tensor) and thz.dim():
        thz = _channels(thz, dims)
    dz, lat_events, z_hat = sigma_delta(z, z_hat, thz, active=g_sp.expand_as(z))
    y = y + _mix(dz, U, scale, dims)
    reach = conv_reach(tuple(x.shape[2:]), geom).to(x.device, x.dtype)
    active = gate.sum(-1)
    reached = (in_events * reach).flatten(1).sum(-1)
    le = lat_events.flatten(1).sum(-1)
    taps_in = V.shape[0]
    counts = StepCounts(
        input_events=in_events.flatten(1).sum(-1),
        latent_events=le,
        synops=reached * active + le * C_out,
        gate_ops=(on.sum(-1) * (taps_in + C_out) + off.sum(-1) * C_out) * out_numel,
        active_rank=active,
    )
    return y, ConvEventState(x_hat, z, z_hat, y, gate.clone()), counts, (in_events, lat_events)


def conv_resync(state: ConvEventState, U: Tensor, s: Tensor, V: Tensor, geom: ConvGeometry):
    r"""Recompute the accumulators exactly from the transmitted references.

    .. math:: z_g = V_g ∗ \hat x,\qquad y = U\,\mathrm{diag}(s ⊙ g)\,\hat z

    The error bound is unchanged (``x̂`` and ``ẑ`` are kept); float rounding is removed.
    """
    dims = geom.dims
    g = _channels(state.gate, dims)
    z = _latent(state.x_hat, V, geom).where(g, state.z)
    y = _mix(state.z_hat, U, s * state.gate, dims)
    return ConvEventState(state.x_hat, z, state.z_hat, y, state.gate)


def conv_error_bound(
    U: Tensor,
    s: Tensor,
    V: Tensor,
    gate: Tensor,
    threshold: float | Tensor,
    latent_threshold: float | Tensor,
    in_channels: int,
) -> Tensor:
    r"""The §2b bound per output channel: ``(C_out,)`` (or ``(B, C_out)`` for a per-sample gate).

    .. math::
        |y - W_g ∗ x| \le \sum_{c,k} θ_c\,|W_g[o, c, k]| + \sum_r θ_{z,r}\,|U_{o,r}\, s_r g_r|
    """
    scale = s * gate.to(s.dtype)
    Us = U * scale.unsqueeze(-2)  # (.., C_out, R)
    W = Us @ V.t()  # (.., C_out, C_in·∏k)
    th = torch.as_tensor(threshold, dtype=U.dtype, device=U.device)
    th = th.repeat_interleave(V.shape[0] // in_channels) if th.dim() else th.expand(V.shape[0])
    thz = torch.as_tensor(latent_threshold, dtype=U.dtype, device=U.device).expand(U.shape[1])
    return W.abs() @ th + Us.abs() @ thz
