"""LoRA on ``nn.RNNCell`` / ``nn.LSTMCell`` / ``nn.GRUCell``: adapters on weight_ih and weight_hh.

The adapters act on the gate pre-activations, before the cell's nonlinearity, so a merged
cell (``W_ih + ΔW_ih``, ``W_hh + ΔW_hh``) computes exactly the same function:

.. math::
    g_i = W_{ih} x + b_{ih} + \\Delta_{ih}(x),\\qquad g_h = W_{hh} h + b_{hh} + \\Delta_{hh}(h)

then the cell's own update (torch's gate order: LSTM i, f, g, o; GRU r, z, n):

- RNN: :math:`h' = \\tanh(g_i + g_h)` (or ReLU)
- LSTM: :math:`c' = σ(f) c + σ(i) \\tanh(g)`, :math:`h' = σ(o) \\tanh(c')`
- GRU: :math:`n = \\tanh(g_{i,n} + σ(r) g_{h,n})`, :math:`h' = (1 - σ(z)) n + σ(z) h`

The seed's ``LoRARNNCell`` applied ``tanh`` a second time to the cell output; here the
adapter sits inside the cell, as merging requires.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from braingate.lora.config import sized_config
from braingate.lora.kinds import Kind, LinearKind
from braingate.lora.variants.registry import VariantConfig
from braingate.lora.wrapper import LoRAWrapper

__all__ = [
    "LoRAGRUCell",
    "LoRALSTMCell",
    "LoRARNNCell",
    "gru_cell_update",
    "lstm_cell_update",
    "rnn_cell_update",
]


def rnn_cell_update(gi: Tensor, gh: Tensor, nonlinearity: str = "tanh") -> Tensor:
    """Elman cell: ``act(gi + gh)``."""
    s = gi + gh
    return torch.tanh(s) if nonlinearity == "tanh" else torch.relu(s)


def lstm_cell_update(gi: Tensor, gh: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """LSTM cell from gate pre-activations ``(B, 4H)``; returns ``(h', c')``."""
    i, f, g, o = (gi + gh).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c_new), c_new


def gru_cell_update(gi: Tensor, gh: Tensor, h: Tensor) -> Tensor:
    """GRU cell from input and hidden pre-activations ``(B, 3H)``; returns ``h'``."""
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


class _LoRACell(LoRAWrapper):
    slots = ("weight_ih", "weight_hh")

    def _build_cell(self, base: nn.Module, rank, alpha, dropout, variant, use_rslora) -> None:
        self._init_wrapper(base)
        self.add_adapter("default", sized_config(rank, alpha, dropout, variant, use_rslora))

    def kind(self, slot: str) -> Kind:
        cell = self.base_layer
        size = cell.input_size if slot == "weight_ih" else cell.hidden_size
        return LinearKind(size, getattr(cell, slot).shape[0])

    def _gates(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
        cell = self.base_layer
        gi = F.linear(x, cell.weight_ih, cell.bias_ih)
        gh = F.linear(h, cell.weight_hh, cell.bias_hh)
        di, dh = self.slot_delta("weight_ih", x), self.slot_delta("weight_hh", h)
        return (gi if di is None else gi + di), (gh if dh is None else gh + dh)

    def _prep(self, x: Tensor, hx):
        unbatched = x.dim() == 1
        if unbatched:
            x = x.unsqueeze(0)
            if hx is not None:
                hx = tuple(t.unsqueeze(0) for t in hx) if isinstance(hx, tuple) else hx.unsqueeze(0)
        return x, hx, unbatched

    def _zeros(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.base_layer.hidden_size)


class LoRARNNCell(_LoRACell):
    """``nn.RNNCell`` with LoRA on ``weight_ih`` and ``weight_hh``.

    Shape: ``input (B, n)``, ``hidden (B, H)`` -> ``(B, H)`` (unbatched ``(n,)`` works too).
    """

    base_types = (nn.RNNCell,)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        rank: int = 8,
        alpha: float | None = None,
        *,
        nonlinearity: str = "tanh",
        dropout: float = 0.0,
        bias: bool = True,
        variant: str | VariantConfig | None = None,
        use_rslora: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        base = nn.RNNCell(input_size, hidden_size, bias, nonlinearity, device=device, dtype=dtype)
        self._build_cell(base, rank, alpha, dropout, variant, use_rslora)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """One step: ``h' = act(W_ih x + W_hh h + b + Δ_ih(x) + Δ_hh(h))``."""
        x, h, unbatched = self._prep(input, hx)
        h = self._zeros(x) if h is None else h
        out = rnn_cell_update(*self._gates(x, h), self.base_layer.nonlinearity)
        return out.squeeze(0) if unbatched else out


class _GatedCell(_LoRACell):
    """The sized constructor of :class:`LoRALSTMCell` and :class:`LoRAGRUCell` (same arguments);
    :class:`LoRARNNCell` has its own, which adds ``nonlinearity``."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        rank: int = 8,
        alpha: float | None = None,
        *,
        dropout: float = 0.0,
        bias: bool = True,
        variant: str | VariantConfig | None = None,
        use_rslora: bool = False,
        device=None,
        dtype=None,
    ):
        """A fresh frozen ``base_types[0](input_size, hidden_size, bias)`` with one adapter.

        Args:
            input_size, hidden_size: sizes of the cell.
            rank: r (default 8). alpha: α (default: r, i.e. scaling 1).
            dropout: adapter-input dropout. bias: base biases. variant: variant name or config.
        """
        super().__init__()
        cell = self.base_types[0](input_size, hidden_size, bias, device=device, dtype=dtype)
        self._build_cell(cell, rank, alpha, dropout, variant, use_rslora)


class LoRALSTMCell(_GatedCell):
    """``nn.LSTMCell`` with LoRA on ``weight_ih`` and ``weight_hh``; returns ``(h', c')``."""

    base_types = (nn.LSTMCell,)

    def forward(
        self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """One LSTM step with adapted gate pre-activations."""
        x, hc, unbatched = self._prep(input, hx)
        h, c = (self._zeros(x), self._zeros(x)) if hc is None else hc
        h, c = lstm_cell_update(*self._gates(x, h), c)
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)


class LoRAGRUCell(_GatedCell):
    """``nn.GRUCell`` with LoRA on ``weight_ih`` and ``weight_hh``."""

    base_types = (nn.GRUCell,)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        """One GRU step with adapted gate pre-activations."""
        x, h, unbatched = self._prep(input, hx)
        h = self._zeros(x) if h is None else h
        out = gru_cell_update(*self._gates(x, h), h)
        return out.squeeze(0) if unbatched else out
