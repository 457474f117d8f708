"""NeuroBench probes for event convolutions: SynapticOperations equal braingate's conv synops.

Registered in :data:`braingate.integrations.neurobench.PROBES` for the kinds ``event_conv1d`` /
``event_conv2d``. After each step of an :class:`~braingate.nn.event_conv.EventConv2d` the probe
replays it as ``nn.Linear`` calls that NeuroBench hooks, on the unfolded (im2col) deltas:

- per gate block ``b``, ``Linear(C_in·∏k, R_b)`` (weight ``V_bᵀ``) fed with the patches of the
  sent input deltas, one row per output position: a sent element appears in the patch of every
  output position whose receptive field holds it, so NeuroBench counts ``Σ_E reach·R_active``;
- per gate block, ``Linear(R_b, C_out)`` (weight ``U_b·diag(s_b)``) fed with the sent latent
  deltas, one row per position: ``|L|·C_out``.

NeuroBench's effective operations are then braingate's ``synops`` and its ``Dense`` (every patch
entry non-zero, padding included) is ``lowrank_ops``. With ``view="dense"`` the step is one
``Linear(C_in·∏k, C_out)`` holding ``W_g`` fed with the input's patches: ``Dense`` is the
dense conv's MACs, ``dense_synops``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from braingate.integrations.neurobench import PROBES, EventActivity, copy_blocks
from braingate.nn.event_conv import EventConv1d, EventConv2d

__all__ = ["ConvProbe"]


class ConvProbe(nn.Module):
    """The ``nn.Linear`` replay of one event conv step (see module docstring)."""

    def __init__(self, layer: EventConv1d | EventConv2d, view: str) -> None:
        super().__init__()
        self.layer, self.view = layer, view
        n, m, R, nb = layer.V.shape[0], layer.out_channels, layer.rank, layer.blocks
        if view == "dense":
            self.full = nn.Linear(n, m, bias=False)
        else:
            self.v = nn.ModuleList(nn.Linear(n, R // nb, bias=False) for _ in range(nb))
            self.u = nn.ModuleList(nn.Linear(R // nb, m, bias=False) for _ in range(nb))
        self.inputs, self.latents = EventActivity(), EventActivity()
        self.before = None

    @torch.no_grad()
    def sync(self) -> None:
        """Copy the layer's current factors into the replay weights."""
        L = self.layer
        if self.view == "dense":
            self.full.weight.copy_((L.U * L.s) @ L.V.t())
            return
        copy_blocks(self)

    def _patches(self, x: Tensor) -> Tensor:
        """``(B, C, *in) -> (B·∏out, C·∏k)``: the receptive field of every output position."""
        L = self.layer
        if L.dims == 1:
            x = x.unsqueeze(2)
        kg = L.kernel_geometry()
        cols = F.unfold(x, (kg["kh"], kg["kw"]), dilation=(kg["dh"], kg["dw"]),
                        padding=(kg["ph"], kg["pw"]), stride=(kg["sh"], kg["sw"]))  # fmt: skip
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])

    def _state(self, x: Tensor):
        st = self.layer._runner.to_torch()
        if st is None:  # a fresh stream: everything starts at zero
            st = self.layer.init_state(x.shape[0], x)
        return st

    def pre(self, x: Tensor) -> None:
        """Snapshot the references before the step (the compiled kernel updates them in place)."""
        st = self._state(x)
        self.before = (st.x_hat.clone(), st.z_hat.clone(), st.gate.clone())

    def post(self, x: Tensor) -> None:
        """Replay the step that just ran as hooked ``nn.Linear`` calls."""
        if self.view == "dense":
            self.full(self.inputs(self._patches(x.detach())))
            return
        L = self.layer
        x_old, z_old, g_old = self.before
        st = self._state(x)
        dims = L.dims
        dx = st.x_hat - x_old
        dz = st.z_hat - z_old
        on = (st.gate & ~g_old).reshape(*st.gate.shape, *([1] * dims))
        if bool(on.any()):  # blocks switched on: their ẑ was first reset to V_b ∗ x̂
            fresh = torch.nn.functional.conv2d if dims == 2 else torch.nn.functional.conv1d
            g = L.geometry()
            filt = L.V.detach().t().reshape(L.rank, L.in_channels, *L.kernel_size)
            f = fresh(x_old, filt, None, g.stride, g.padding, g.dilation)
            dz = torch.where(on, st.z_hat - f, dz)
            dz = dz * ((dz.abs() > 1e-6 * (1.0 + f.abs())) | ~on)
        gate = st.gate.reshape(*st.gate.shape, *([1] * dims))
        dz = dz * gate
        patches = self.inputs(self._patches(dx))  # (B·P, C·∏k)
        lat = self.latents(dz.flatten(2).transpose(1, 2).reshape(-1, L.rank))  # (B·P, R)
        P = lat.shape[0] // dx.shape[0]
        size = L.rank // L.blocks
        for b in range(L.blocks):
            rows = st.gate[:, b * size].repeat_interleave(P)
            if not bool(rows.any()):
                continue
            self.v[b](patches[rows])
            self.u[b](lat[rows, b * size : (b + 1) * size])


for _kind in (EventConv1d.kind, EventConv2d.kind):
    PROBES.add(_kind, ConvProbe)
