"""EventGRU / EventLSTM and their cells: delta recurrent layers on factored weights (DESIGN §2c).

Each layer has an input factor ``W_ih ≈ U_x diag(s_x) V_xᵀ`` and a hidden factor
``W_hh ≈ U_h diag(s_h) V_hᵀ``, each with blocks, gates and a latent threshold; the event path keeps
the gate pre-activations as memories updated by the deltas of the input (θ), of the previous hidden
state (θ_h) and of the latent units (θ_z), and computes the gates densely from them. The math is
:mod:`braingate.functional.rnn_events`; the compiled op and the runner that owns the event state
are :mod:`braingate.runtime.rnn`.

Calling conventions:

- ``execution="dense"``: the same call and return as the torch module (``nn.GRU`` / ``nn.LSTM``:
  ``(T, B, n)`` or ``batch_first`` ``(B, T, n)`` or unbatched ``(T, n)``, optional ``h0``;
  ``nn.GRUCell`` / ``nn.LSTMCell``: ``(B, n)`` or ``(n,)``, optional ``hx``). Stateless.
- ``execution="event"`` (and ``"auto"``, which runs the event path for recurrent layers): state is
  carried across calls until :meth:`reset`. A 2-D input ``(B, n)`` is **one time step**; a 3-D
  input is a chunk of steps (``(T, B, n)``, or ``(B, T, n)`` with ``batch_first``) stepped in
  order. Returns are shaped like torch's for the same call: a sequence module returns
  ``(out, h_n)`` (``out`` ``(B, H)`` for a step, ``(T, B, H)`` for a chunk; ``h_n`` ``(L, B, H)``,
  LSTM ``(h_n, c_n)``), a GRU cell ``h``, an LSTM cell ``(h, c)``. A model written for torch,
  ``out, _ = self.gru(xs); return self.head(out[-1])``, therefore steps correctly when it is fed
  length-1 chunks ``xs[t:t+1]`` — what :func:`braingate.simulate` does for such models (inside
  ``streaming(model, hx_at_start_only=True)``, so an ``h0`` the forward passes at every call
  starts the stream only).
- ``return_state=False``: every call returns only the output tensor, so the module composes in
  ``nn.Sequential`` (dense: ``(T, B, H)`` per-step outputs; event: ``(B, H)`` per step) and lowers
  into compiled chains (:func:`braingate.sim.compile_events`).
- ``stream=True`` (set by :func:`streaming`): dense mode, too, treats a 2-D input as one step and
  carries the hidden state across calls (for stepping a model in dense mode).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from braingate.functional.gating import block_importance, blocks_to_units, first_k_blocks
from braingate.functional.lowrank import orthonormal_, svd_factorize
from braingate.functional.rnn_events import (
    GATES,
    NEURON_OPS,
    FactorParams,
    delta_rnn_init,
    delta_rnn_step,
    dense_rnn_layer,
)
from braingate.nn import _validate as check
from braingate.nn.base import Counts, EventModule, register_event_layer
from braingate.runtime import RUNTIME_LOCK, register_fuser
from braingate.runtime.rnn import RNNRunner, fuse_delta_rnn

__all__ = ["EventGRU", "EventGRUCell", "EventLSTM", "EventLSTMCell", "streaming"]

_KERNEL_DTYPES = (torch.float32, torch.float64)
_THRESHOLDS = ("threshold", "hidden_threshold", "latent_threshold")


def _ranks(rank, n: int, H: int, G: int, blocks: int, layer: int) -> tuple[int, int]:
    """``(R_x, R_h)`` of one layer: ``rank`` (an int, a pair, or a list of pairs per layer)
    capped at each factor's full rank."""
    if isinstance(rank, list):
        rank = rank[layer]
    if isinstance(rank, tuple) and len(rank) == 2:
        r_ih, r_hh = rank
    else:
        r_ih = r_hh = rank
    for r in (r_ih, r_hh):
        check.positive_int("rank", r)
    out = (min(r_ih, n, G * H), min(r_hh, H))
    for side, r in zip(("input", "hidden"), out, strict=True):
        if r % blocks:
            raise ValueError(
                f"layer {layer}'s {side} factor has rank {r} (capped at its full rank) which is "
                f"not divisible by blocks={blocks}; pass rank=(r_ih, r_hh) with multiples of "
                f"{blocks} up to ({min(n, G * H)}, {H}), or fewer blocks"
            )
    return out


def _rank_ok(rank, layers: int) -> bool:
    pair = lambda r: isinstance(r, tuple) and len(r) == 2  # noqa: E731
    if isinstance(rank, list):
        return len(rank) == layers and all(pair(r) or isinstance(r, int) for r in rank)
    return isinstance(rank, int) or pair(rank)


class _DeltaRNN(EventModule):
    """Shared implementation of the four recurrent event modules (see the module docstring)."""

    cell: ClassVar[str] = "gru"
    is_cell: ClassVar[bool] = False
    recurrent: ClassVar[bool] = True
    threshold_names: ClassVar[tuple[str, ...]] = _THRESHOLDS

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        rank: int | tuple[int, int] | list[tuple[int, int]],
        *,
        num_layers: int = 1,
        blocks: int = 1,
        threshold: float | Tensor = 0.0,
        hidden_threshold: float | Tensor = 0.0,
        latent_threshold: float | Tensor = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        return_state: bool = True,
        resync_every: int = 1000,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        n = check.positive_int("input_size", input_size)
        H = check.positive_int("hidden_size", hidden_size)
        L = check.positive_int("num_layers", num_layers)
        check.positive_int("blocks", blocks)
        if bidirectional:
            raise ValueError(
                "bidirectional=True is not supported: an event layer runs forward in time; "
                "pass bidirectional=False"
            )
        for name, v in (("bias", bias), ("batch_first", batch_first),
                        ("return_state", return_state)):  # fmt: skip
            if not isinstance(v, bool):
                raise TypeError(f"{name} must be a bool, got {type(v).__name__} {v!r}")
        if (
            isinstance(dropout, bool)
            or not isinstance(dropout, (int, float))
            or not (0 <= dropout < 1)
        ):
            raise ValueError(f"dropout={dropout!r} must be a number in [0, 1); pass e.g. 0.0")
        if isinstance(resync_every, bool) or not isinstance(resync_every, int) or resync_every < 0:
            raise ValueError(f"resync_every={resync_every!r} must be an int >= 0 (0 disables)")
        if not _rank_ok(rank, L):
            raise TypeError(
                f"rank must be an int, a pair (r_ih, r_hh) or a list of {L} pairs (one per "
                f"layer), got {rank!r}"
            )
        G = GATES[self.cell]
        self.input_size, self.hidden_size, self.num_layers = n, H, L
        self.gates, self.blocks, self.bias = G, blocks, bias
        self.batch_first, self.dropout, self.return_state = (
            batch_first,
            float(dropout),
            return_state,
        )
        self.resync_every = resync_every
        self.stream = False
        self.hx_at_start_only = False  # set by streaming(..., hx_at_start_only=True)
        self.ranks = tuple(_ranks(rank, n if li == 0 else H, H, G, blocks, li) for li in range(L))
        self._names: list[tuple[str, ...]] = []
        kw = {"device": device, "dtype": dtype}
        for li, (rx, rh) in enumerate(self.ranks):
            sfx = "" if self.is_cell else f"_l{li}"
            names = []
            for side, cols, r in (("ih", n if li == 0 else H, rx), ("hh", H, rh)):
                for p, shape in (("U", (G * H, r)), ("s", (r,)), ("V", (cols, r))):
                    names.append(f"{p}_{side}{sfx}")
                    self.register_parameter(names[-1], nn.Parameter(torch.empty(shape, **kw)))
                names.append(f"bias_{side}{sfx}")
                if bias:
                    self.register_parameter(names[-1], nn.Parameter(torch.empty(G * H, **kw)))
                else:
                    self.register_parameter(names[-1], None)
            self._names.append(tuple(names))
        self._threshold = check.threshold("threshold", threshold, n)
        self._hidden_threshold = check.threshold("hidden_threshold", hidden_threshold, L * H)
        self._latent_threshold = check.threshold("latent_threshold", latent_threshold,
                                                 self.latent_size)  # fmt: skip
        self._gates: list[Tensor] | None = None  # None: all on; else per factor (R,) / (B, R)
        self._runner = RNNRunner()
        self._epoch = 0
        self.reset_parameters()

    # -- sizes and parameters -------------------------------------------------------------------
    @property
    def latent_size(self) -> int:
        """Latent units of all factors: ``Σ_l R_x,l + R_h,l``."""
        return sum(rx + rh for rx, rh in self.ranks)

    def _sizes(self) -> list[tuple[int, int, int]]:
        """``[(n_l, R_x,l, R_h,l)]`` per layer."""
        return [(self.input_size if li == 0 else self.hidden_size, rx, rh)
                for li, (rx, rh) in enumerate(self.ranks)]  # fmt: skip

    def _param(self, layer: int, k: int) -> Tensor | None:
        return self._parameters[self._names[layer][k]]

    def _factor_tensors(self) -> list[Tensor]:
        """U, s, V of every factor (what the event state's accumulators depend on)."""
        return [self._param(li, k) for li in range(self.num_layers) for k in (0, 1, 2, 4, 5, 6)]

    def _tracked(self) -> list[Tensor]:
        """Every tensor whose in-place edit changes the compiled step's arguments."""
        out = [p for p in self._parameters.values() if p is not None]
        for name in _THRESHOLDS:
            v = self.__dict__["_" + name]
            if isinstance(v, Tensor):
                out.append(v)
        if self._gates is not None:
            out += self._gates
        return out

    def reset_parameters(self) -> None:
        """Orthonormal ``U``, ``V`` and equal ``s`` with the scale of torch's ``U(−k, k)``,
        ``k = 1/√H`` init (entry variance ``1/(3H)``); biases ``U(−k, k)``."""
        H = self.hidden_size
        with torch.no_grad():
            for li in range(self.num_layers):
                for off in (0, 4):
                    U, s, V, b = (self._param(li, off + k) for k in range(4))
                    for f in (U, V):
                        orthonormal_(f)
                    rows, cols, r = U.shape[0], V.shape[0], s.shape[0]
                    s.fill_(math.sqrt(rows * cols / (3.0 * H * r)))
                    if b is not None:
                        b.uniform_(-1 / math.sqrt(H), 1 / math.sqrt(H))
        self.reset()

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if "_epoch" in self.__dict__ and (name in self._parameters or name.endswith("_raw")):
            self.__dict__["_epoch"] += 1  # a replaced factor invalidates cached copies

    def register_parameter(self, name: str, param) -> None:
        super().register_parameter(name, param)
        if "_epoch" in self.__dict__:
            self.__dict__["_epoch"] += 1

    def _apply(self, fn, recurse: bool = True):
        out = super()._apply(fn, recurse)  # .to(), .double(): cached copies go, the stream
        # continues in the converted state (as for EventLinear)
        if self._gates is not None:
            self._gates = [fn(g) for g in self._gates]
        for name in _THRESHOLDS:
            v = self.__dict__["_" + name]
            if isinstance(v, Tensor):
                self.__dict__["_" + name] = fn(v)
        self._epoch += 1
        self._runner.convert_state(self, fn)
        return out

    # -- thresholds -----------------------------------------------------------------------------
    def _threshold_size(self, name: str) -> int:
        return {"threshold": self.input_size, "hidden_threshold": self.num_layers * self.hidden_size,
                "latent_threshold": self.latent_size}[name]  # fmt: skip

    def _get_threshold(self, name: str) -> float | Tensor:
        raw = self._parameters.get(name + "_raw")
        return self.__dict__["_" + name] if raw is None else nn.functional.softplus(raw)

    def _set_threshold(self, name: str, value) -> None:
        v = check.threshold(name, value, self._threshold_size(name))
        self.__dict__["_" + name] = v
        raw = self._parameters.get(name + "_raw")
        if raw is not None:
            from braingate.functional.surrogate import softplus_inverse

            with torch.no_grad():
                t = torch.as_tensor(v, dtype=raw.dtype, device=raw.device)
                raw.copy_(softplus_inverse(t.expand_as(raw) if t.dim() <= raw.dim() else t.mean()))
        self._epoch += 1

    threshold = property(
        lambda self: self._get_threshold("threshold"),
        lambda self, v: self._set_threshold("threshold", v),
        doc="Input θ ≥ 0 of the first layer: scalar or ``(input_size,)``.",
    )
    hidden_threshold = property(
        lambda self: self._get_threshold("hidden_threshold"),
        lambda self, v: self._set_threshold("hidden_threshold", v),
        doc="θ_h ≥ 0 of every layer's hidden state (also the input θ of the layer above it): "
        "scalar or ``(num_layers·hidden_size,)``, layer by layer.",
    )
    latent_threshold = property(
        lambda self: self._get_threshold("latent_threshold"),
        lambda self, v: self._set_threshold("latent_threshold", v),
        doc="θ_z ≥ 0 of the latent units: scalar or ``(latent_size,)``, per layer input factor "
        "then hidden factor.",
    )

    def _layer_thresholds(self, layer: int) -> tuple:
        """``(θ_in, θ_h, θ_z ih, θ_z hh)`` of one layer (scalars or per-unit slices)."""
        H = self.hidden_size

        def part(v, lo, hi):
            return v[lo:hi] if isinstance(v, Tensor) and v.dim() == 1 else v

        th_h = self.hidden_threshold
        th_in = self.threshold if layer == 0 else part(th_h, (layer - 1) * H, layer * H)
        off = sum(rx + rh for rx, rh in self.ranks[:layer])
        rx, rh = self.ranks[layer]
        lat = self.latent_threshold
        return (th_in, part(th_h, layer * H, (layer + 1) * H), part(lat, off, off + rx),
                part(lat, off + rx, off + rx + rh))  # fmt: skip

    def learn_thresholds(self, per_unit: bool = True) -> None:
        """Make θ, θ_h, θ_z learnable: parameters ``threshold_raw`` ``(input_size,)``,
        ``hidden_threshold_raw`` ``(L·H,)``, ``latent_threshold_raw`` ``(latent_size,)``
        (``()`` each when ``per_unit=False``), used as ``softplus(raw)`` and started at the
        current values; the torch event path passes surrogate gradients to them."""
        from braingate.functional.surrogate import softplus_inverse

        p = self._param(0, 0)
        for name in _THRESHOLDS:
            value = torch.as_tensor(self._get_threshold(name), dtype=p.dtype, device=p.device)
            size = self._threshold_size(name)
            value = value.detach().expand(size) if per_unit else value.detach().mean()
            self.register_parameter(name + "_raw", nn.Parameter(softplus_inverse(value.clone())))
        self._epoch += 1

    def freeze_thresholds(self) -> None:
        """Replace learned thresholds by their current values and drop the ``*_raw`` params."""
        for name in _THRESHOLDS:
            raw = self._parameters.pop(name + "_raw", None)
            if raw is not None:
                v = nn.functional.softplus(raw.detach()).clone()
                self._set_threshold(name, v if v.dim() else float(v))

    # -- gates ----------------------------------------------------------------------------------
    def set_active_blocks(self, k_or_mask: int | Tensor | None) -> None:
        """Switch gate blocks of every factor: ``k`` most important blocks of each (by
        ``Σ s²``), a bool mask ``(blocks,)`` or per sample ``(B, blocks)`` applied to every
        factor, or None for all on. In event mode the change takes effect at the next step."""
        if k_or_mask is None:
            gates = None
        elif isinstance(k_or_mask, Tensor):
            if k_or_mask.dtype != torch.bool:
                raise TypeError(f"gate mask must be a bool tensor, got dtype {k_or_mask.dtype}")
            if k_or_mask.dim() not in (1, 2) or k_or_mask.shape[-1] != self.blocks:
                raise ValueError(
                    f"gate mask has shape {tuple(k_or_mask.shape)}; pass ({self.blocks},) or "
                    f"(B, {self.blocks}) for blocks={self.blocks}"
                )
            mask = k_or_mask.to(self._param(0, 0).device)
            gates = [blocks_to_units(mask, s.shape[0]).clone()
                     for s in self._factor_tensors()[1::3]]  # fmt: skip
        elif isinstance(k_or_mask, int) and not isinstance(k_or_mask, bool):
            if not 0 <= k_or_mask <= self.blocks:
                raise ValueError(
                    f"k={k_or_mask} active blocks is out of range; pass 0 <= k <= {self.blocks}"
                )
            gates = []
            for s in self._factor_tensors()[1::3]:
                mask = first_k_blocks(block_importance(s, self.blocks), k_or_mask)
                gates.append(blocks_to_units(mask, s.shape[0]))
        else:
            raise TypeError(
                f"set_active_blocks takes an int, a bool tensor or None, got "
                f"{type(k_or_mask).__name__}"
            )
        self._gates = gates
        self._epoch += 1

    def _gate_batch(self) -> int | None:
        g = self._gates
        return g[0].shape[0] if g is not None and g[0].dim() == 2 else None

    def _gate(self, layer: int, side: int) -> Tensor:
        if self._gates is None:
            s = self._param(layer, 1 + 4 * side)
            return torch.ones(s.shape[0], dtype=torch.bool, device=s.device)
        return self._gates[2 * layer + side]

    def _factors(self, layer: int, B: int | None = None) -> tuple[FactorParams, FactorParams]:
        """The input and hidden :class:`FactorParams` of one layer (gates expanded to ``B``)."""
        out = []
        for side in (0, 1):
            U, s, V, b = (self._param(layer, 4 * side + k) for k in range(4))
            g = self._gate(layer, side)
            if B is not None:
                g = g.expand(B, -1)
            out.append(FactorParams(U, s, V, b, g))
        return out[0], out[1]

    # -- dense path -----------------------------------------------------------------------------
    def _dense(self, xs: Tensor, h0: Tensor, c0: Tensor | None):
        """Dense path over ``(T, B, n)``: ``(out (T, B, H), h_n (L, B, H), c_n)``."""
        B = xs.shape[1]
        gb = self._gate_batch()
        if gb is not None and gb != B:
            raise ValueError(
                f"per-sample gate for B={gb} does not match the input's batch {B}; call "
                "set_active_blocks again for this batch"
            )
        inp, hs, cs = xs, [], []
        for li in range(self.num_layers):
            ih, hh = self._factors(li)
            out, h, c = dense_rnn_layer(self.cell, inp, ih, hh, h0[li],
                                        None if c0 is None else c0[li])  # fmt: skip
            hs.append(h)
            cs.append(c)
            if self.dropout and self.training and li < self.num_layers - 1:
                out = nn.functional.dropout(out, self.dropout, True)
            inp = out
        return inp, torch.stack(hs), (torch.stack(cs) if c0 is not None else None)

    # -- event path -----------------------------------------------------------------------------
    def _use_kernel(self, x: Tensor) -> bool:
        from braingate.runtime.ptr import AVAILABLE

        return (
            AVAILABLE
            and x.device.type == "cpu"
            and x.dtype in _KERNEL_DTYPES
            and not (
                torch.is_grad_enabled()
                and (
                    x.requires_grad
                    or any(p.requires_grad for p in self._parameters.values() if p is not None)
                )
            )
        )

    def _event_step(self, x: Tensor) -> Tensor:
        """One event step ``(B, n) -> (B, H)`` on the runner's state."""
        r = self._runner
        B = x.shape[0]
        r.prepare(self, B)
        gb = self._gate_batch()
        if gb is not None and gb != B:
            raise ValueError(
                f"per-sample gate for B={gb} does not match the input's batch {B}; call "
                "set_active_blocks again for this batch"
            )
        if self._use_kernel(x):
            if not r.ready(self, B, x.dtype):
                reason = r.build(self, B, x.dtype)
                if reason:  # never expected: every array is allocated by the runner
                    raise RuntimeError(f"cannot build the compiled recurrent step: {reason}")
            out = r.kernel_step((x.detach() if x.requires_grad else x).contiguous())
        else:
            out = r.reference(self, x)
        r.stepped(self)
        return out

    def _reference(self, x: Tensor, states: tuple):
        """Every layer's torch step: ``(h_top, new states, [DeltaStep per layer])``."""
        B = x.shape[0]
        new, steps, inp = [], [], x
        for li in range(self.num_layers):
            ih, hh = self._factors(li, B)
            step = delta_rnn_step(self.cell, inp, states[li], ih, hh, *self._layer_thresholds(li))
            new.append(step.state)
            steps.append(step)
            inp = step.out
        return inp, tuple(new), steps

    # -- forward --------------------------------------------------------------------------------
    def forward(self, input: Tensor, hx=None):
        if isinstance(input, PackedSequence):
            raise TypeError(
                f"{type(self).__name__} does not take a PackedSequence yet; pad it with "
                "torch.nn.utils.rnn.pad_packed_sequence and pass the padded (T, B, n) tensor"
            )
        p = self._param(0, 0)
        if not isinstance(input, Tensor):
            raise TypeError(f"input must be a torch.Tensor, got {type(input).__name__}")
        if input.layout != torch.strided:
            raise TypeError(f"input has layout {input.layout}; pass a dense tensor (x.to_dense())")
        if input.dtype != p.dtype:
            raise TypeError(
                f"input dtype {input.dtype} differs from the layer's {p.dtype}; use x.to({p.dtype})"
            )
        if input.device != p.device:
            raise ValueError(
                f"input is on {input.device} but the layer is on {p.device}; move one with "
                f".to({p.device!s})"
            )
        if input.dim() == 0 or input.shape[-1] != self.input_size or input.numel() == 0:
            raise ValueError(
                f"input has shape {tuple(input.shape)} but input_size={self.input_size}; pass "
                f"{self._shapes_hint()}"
            )
        if self._execution == "dense" and not self.stream:
            return self._dense_forward(input, hx)
        if input.dim() not in (2, 3):
            raise ValueError(
                f"input has shape {tuple(input.shape)}; a stepped call takes one step "
                f"(B, {self.input_size}) or a chunk of steps "
                f"({'B, T' if self.batch_first else 'T, B'}, {self.input_size})"
            )
        chunk = input.dim() == 3
        xs = input.transpose(0, 1) if chunk and self.batch_first else input
        B = xs.shape[-2]
        h0, c0 = self._check_hx(hx, B, batched=True)
        if h0 is not None and self.__dict__.get("hx_at_start_only") and not self._at_stream_start():
            h0 = c0 = None  # a torch forward's h0 starts the sequence, not every step of it
        if self._execution == "dense":
            return self._stream_dense(xs if chunk else xs.unsqueeze(0), h0, c0, chunk)
        with RUNTIME_LOCK:  # threads stepping one module are serialised (see runtime.ops)
            r = self._runner
            if r.B is not None and r.B != B and not r.fresh:
                r.prepare(self, B)  # raises: batch change mid-stream (state untouched)
            if h0 is not None:
                r.prepare(self, B)
                r.set_hidden(self, h0, c0)
            if chunk:
                out = torch.stack([self._event_step(xs[t]) for t in range(xs.shape[0])])
                if self.batch_first:
                    out = out.transpose(0, 1)
            else:
                out = self._event_step(xs)
            if not self.return_state:
                return out
            h, c = r.hidden(self, xs)
        return self._finish(out, h, c, chunk)

    def _at_stream_start(self) -> bool:
        """No step of the current stream has run yet (event, or dense streaming)."""
        r = self._runner
        return r.carry is None if self._execution == "dense" else r.fresh

    def _stream_dense(self, xs: Tensor, h0, c0, chunk: bool):
        r = self._runner
        B = xs.shape[1]
        if h0 is None:
            if r.carry is not None and r.carry[0].shape[1] == B:
                h0, c0 = r.carry
            else:
                h0 = xs.new_zeros(self.num_layers, B, self.hidden_size)
                c0 = h0.clone() if self.cell == "lstm" else None
        elif c0 is None and self.cell == "lstm":
            c0 = torch.zeros_like(h0)
        out, h, c = self._dense(xs, h0, c0)
        r.carry = (h, c)
        if not chunk:
            out = out[0]
        elif self.batch_first:
            out = out.transpose(0, 1)
        if not self.return_state:
            return out
        return self._finish(out, h, c, chunk)

    def _dense_forward(self, input: Tensor, hx):
        if self.is_cell:
            if input.dim() not in (1, 2):
                raise ValueError(
                    f"input has shape {tuple(input.shape)}; a cell takes (B, {self.input_size}) "
                    f"or ({self.input_size},)"
                )
            batched = input.dim() == 2
            xs = (input if batched else input.unsqueeze(0)).unsqueeze(0)
        else:
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"input has shape {tuple(input.shape)}; pass {self._shapes_hint()}"
                )
            batched = input.dim() == 3
            xs = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                xs = xs.transpose(0, 1)
        B = xs.shape[1]
        h0, c0 = self._check_hx(hx, B, batched)
        if h0 is None:
            h0 = xs.new_zeros(self.num_layers, B, self.hidden_size)
            c0 = h0.clone() if self.cell == "lstm" else None
        out, h, c = self._dense(xs, h0, c0)
        if self.is_cell:
            out = out[0] if batched else out[0, 0]
            h, c = (h, c) if batched else (h[:, 0], None if c is None else c[:, 0])
        else:
            if not batched:
                out, h, c = out[:, 0], h[:, 0], (None if c is None else c[:, 0])
            elif self.batch_first:
                out = out.transpose(0, 1)
        if not self.return_state:
            return out
        return self._finish(out, h, c, True)

    def _finish(self, out: Tensor, h: Tensor, c: Tensor | None, chunk: bool):
        """Torch-shaped returns (see the module docstring)."""
        if self.is_cell:
            return out if self.cell == "gru" else (out, c[0])
        return out, (h if c is None else (h, c))

    def _shapes_hint(self) -> str:
        n = self.input_size
        if self.is_cell:
            return f"(B, {n}) or ({n},)"
        seq = f"(B, T, {n})" if self.batch_first else f"(T, B, {n})"
        return f"{seq}, or one step (B, {n}) in event mode"

    def _check_hx(self, hx, B: int, batched: bool) -> tuple[Tensor | None, Tensor | None]:
        """The initial state as ``(h0 (L, B, H), c0 or None)``, validated (None if not given)."""
        if hx is None:
            return None, None
        L, H = self.num_layers, self.hidden_size
        lead = () if self.is_cell else (L,)
        want = (*lead, B, H) if batched else (*lead, H)
        name = "hx" if self.is_cell else "h0"
        p = self._param(0, 0)
        if self.cell == "lstm":
            if not (isinstance(hx, tuple) and len(hx) == 2):
                raise TypeError(
                    f"{name} of an LSTM must be a tuple (h, c), got {type(hx).__name__}"
                )
            parts = hx
        else:
            parts = (hx,)
        for t in parts:
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must hold tensors, got {type(t).__name__}")
            if tuple(t.shape) != want:
                raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {want}")
            if t.dtype != p.dtype or t.device != p.device:
                raise TypeError(
                    f"{name} is {t.dtype} on {t.device}; the layer is {p.dtype} on {p.device}"
                )
        if not batched:
            parts = tuple(t.unsqueeze(-2) for t in parts)
        if self.is_cell:
            parts = tuple(t.unsqueeze(0) for t in parts)
        return parts[0], (parts[1] if len(parts) == 2 else None)

    # -- the event-module protocol (DESIGN §2d) ---------------------------------------------------
    def reset(self) -> None:
        """Clear the event state, the streaming hidden state and the counters."""
        self._runner.reset()

    @property
    def last_counts(self) -> Counts | None:
        """:class:`~braingate.nn.base.Counts` of the last event step, ``(B,)`` arrays: both
        factors of every layer summed; ``neuron_ops`` the gates' elementwise products."""
        r = self._runner
        if not r.counted or r.counts is None:
            return None
        c = r.counts  # (L, 2, B, 5): input, latent, synops, gate_ops, active
        GH, H = self.gates * self.hidden_size, self.hidden_size
        low = np.zeros(c.shape[2])
        for li, (n, _, _) in enumerate(self._sizes()):
            low += (n + GH) * c[li, 0, :, 4] + (H + GH) * c[li, 1, :, 4]
        zeros = np.zeros(c.shape[2])
        return Counts(
            synops=c[:, :, :, 2].sum((0, 1)).astype(np.float64),
            dense_synops=zeros + self._dense_synops(),
            lowrank_ops=low,
            input_events=c[:, :, :, 0].sum((0, 1)).astype(np.float64),
            latent_events=c[:, :, :, 1].sum((0, 1)).astype(np.float64),
            gate_ops=c[:, :, :, 3].sum((0, 1)).astype(np.float64),
            resync_ops=r.resync_buf.astype(np.float64),
            neuron_ops=zeros + self._neuron_ops(),
        )

    def _dense_synops(self) -> float:
        G, H = self.gates, self.hidden_size
        return float(sum(G * H * (n + H) for n, _, _ in self._sizes()))

    def _neuron_ops(self) -> float:
        return float(NEURON_OPS[self.cell] * self.hidden_size * self.num_layers)

    def dense_counts(self, sample_shape: tuple[int, ...] = ()) -> Counts:
        """One dense step of one sample: every input, hidden unit and active latent unit sent."""
        GH, H = self.gates * self.hidden_size, self.hidden_size
        ops = ins = lats = 0.0
        for li, (n, _, _) in enumerate(self._sizes()):
            ax = float(self._gate(li, 0).double().sum(-1).mean())
            ah = float(self._gate(li, 1).double().sum(-1).mean())
            ops += (n + GH) * ax + (H + GH) * ah
            ins += n + H
            lats += ax + ah
        return Counts(synops=ops, dense_synops=self._dense_synops(), lowrank_ops=ops,
                      input_events=ins, latent_events=lats,
                      neuron_ops=self._neuron_ops())  # fmt: skip

    def unit_events(self) -> tuple[np.ndarray, np.ndarray]:
        """Events per input unit (per layer: its inputs, then its hidden units) and per latent
        unit (per layer: input factor, then hidden factor), summed over samples and steps."""
        u = self._runner.units
        if u is None:
            ins = sum(n + self.hidden_size for n, _, _ in self._sizes())
            return np.zeros(ins, np.int64), np.zeros(self.latent_size, np.int64)
        ins = np.concatenate([np.concatenate([d["units_x"], d["units_h"]]) for d in u])
        lat = np.concatenate([np.concatenate([d["lat_x"], d["lat_h"]]) for d in u])
        return ins, lat

    def report_entry(self, batch: int, dense_steps: int = 0) -> dict:
        d = super().report_entry(batch, 0)
        gates = [self._gate(li, s).expand(batch, -1).double().mean(0).cpu().numpy()
                 for li in range(self.num_layers) for s in (0, 1)]  # fmt: skip
        d["input_unit_events"] = (np.asarray(d["input_unit_events"]) + dense_steps).tolist()
        lat = np.asarray(d["latent_unit_events"]) + dense_steps * np.concatenate(gates)
        d["latent_unit_events"] = lat.tolist()
        d["resync_ops"] = self._runner.resync_ops / batch
        return d

    def describe(self) -> dict:
        """Shapes for reports and hwmaps: ``in_features`` (input_size), ``out_features``
        (hidden_size), ``rank`` (all latent units), ``blocks``, and ``factors``: per factor its
        name, rows (``G·H``), cols, rank, the unit stream that feeds it and its offsets in
        :meth:`unit_events`."""
        factors, in_off, lat_off = [], 0, 0
        GH = self.gates * self.hidden_size
        for li, (n, rx, rh) in enumerate(self._sizes()):
            src = "input" if li == 0 else f"h{li - 1}"
            for side, cols, r, feed in (("ih", n, rx, src), ("hh", self.hidden_size, rh, f"h{li}")):
                factors.append({"name": f"{side}_l{li}", "layer": li, "rows": GH, "cols": cols,
                                "rank": r, "source": feed, "in_offset": in_off,
                                "lat_offset": lat_off})  # fmt: skip
                in_off += cols
                lat_off += r
        return {
            "in_features": self.input_size, "out_features": self.hidden_size,
            "rank": self.latent_size, "blocks": self.blocks, "cell": self.cell,
            "hidden_size": self.hidden_size, "num_layers": self.num_layers,
            "gates": self.gates, "factors": factors,
        }  # fmt: skip

    def init_state(self, batch: int, like: Tensor) -> tuple:
        """Per layer, the zero :class:`~braingate.functional.rnn_events.DeltaGRUState` /
        ``DeltaLSTMState`` for ``batch`` samples."""
        return tuple(delta_rnn_init(self.cell, batch, *self._factors(li, batch))
                     for li in range(self.num_layers))  # fmt: skip

    def reference_step(self, x: Tensor, state: tuple) -> tuple[Tensor, tuple, Counts]:
        """One differentiable event step of the whole stack: ``(h_top (B, H), new_state,
        Counts of (B,) tensors)``; learned thresholds get surrogate gradients."""
        if x.dim() != 2 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"an event step takes (B, {self.input_size}), got {tuple(x.shape)}; call it "
                "once per time step"
            )
        y, new, steps = self._reference(x, state)
        GH, H = self.gates * self.hidden_size, self.hidden_size
        syn = ins = lats = gops = low = 0
        for (n, _, _), st in zip(self._sizes(), steps, strict=True):
            cx, ch = st.x_counts, st.h_counts
            syn = syn + cx.synops + ch.synops
            ins = ins + cx.input_events + ch.input_events
            lats = lats + cx.latent_events + ch.latent_events
            gops = gops + cx.gate_ops + ch.gate_ops
            low = low + (n + GH) * cx.active_rank + (H + GH) * ch.active_rank
        counts = Counts(synops=syn, dense_synops=self._dense_synops(), lowrank_ops=low,
                        input_events=ins, latent_events=lats, gate_ops=gops,
                        neuron_ops=self._neuron_ops())  # fmt: skip
        return y, new, counts

    def format_step(self, y: Tensor, state: tuple):
        """What an event-mode call on one step ``(B, n)`` returns, from :meth:`reference_step`'s
        ``y`` and ``state``: ``(y, h_n)`` (LSTM ``(y, (h_n, c_n))``) for a sequence module, ``y``
        for a GRU cell, ``(y, c)`` for an LSTM cell; ``y`` alone with ``return_state=False``.
        For code that steps the module through :meth:`reference_step` in its place (training
        through events) and must hand the model's forward what the module would."""
        if not self.return_state:
            return y
        lstm = self.cell == "lstm"
        if self.is_cell:
            return (y, state[0].cell) if lstm else y
        h = torch.stack([st.hidden for st in state])
        return (y, (h, torch.stack([st.cell for st in state]))) if lstm else (y, h)

    def _lower(self, B: int, dtype, in_shape: tuple):
        """This module as a compiled-chain row (the fuser; see ``runtime.rnn``)."""
        return self._runner.lower(self, B, dtype, in_shape)

    # -- state dict: everything that changes the function (DESIGN §2d) ---------------------------
    def get_extra_state(self) -> dict:
        return {
            "threshold": self._threshold, "hidden_threshold": self._hidden_threshold,
            "latent_threshold": self._latent_threshold, "execution": self._execution,
            "resync_every": self.resync_every, "return_state": self.return_state,
            "gates": None if self._gates is None else [g.detach().cpu().clone()
                                                       for g in self._gates],
        }  # fmt: skip

    def set_extra_state(self, state: dict) -> None:
        if not isinstance(state, dict) or "hidden_threshold" not in state:
            raise ValueError(
                f"{type(self).__name__} extra state must be the dict saved by get_extra_state, "
                f"got {type(state).__name__}; load a state dict saved from the same class"
            )
        for name in _THRESHOLDS:
            if name + "_raw" in self._parameters:  # the loaded raw parameter is the value
                self.__dict__["_" + name] = check.threshold(name, state[name],
                                                            self._threshold_size(name))  # fmt: skip
            else:
                self._set_threshold(name, state[name])
        self.execution = state["execution"]
        self.resync_every = state["resync_every"]
        self.return_state = state.get("return_state", self.return_state)
        gates = state.get("gates")
        if gates is not None:
            sizes = [s.shape[0] for s in self._factor_tensors()[1::3]]
            if len(gates) != len(sizes) or any(
                g.dtype != torch.bool or g.shape[-1] != r for g, r in zip(gates, sizes, strict=True)
            ):
                raise ValueError(
                    f"saved gates do not match this module's factors (ranks {sizes}); load a "
                    "state dict saved from a module of the same shape"
                )
            gates = [g.to(self._param(0, 0).device).clone() for g in gates]
        self._gates = gates
        self._epoch += 1
        self.reset()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing,
                              unexpected, errors):  # fmt: skip
        p = self._param(0, 0)
        for name in _THRESHOLDS:  # learned thresholds load into a module with fixed ones
            key = prefix + name + "_raw"
            if key in state_dict and name + "_raw" not in self._parameters:
                raw, size = state_dict[key], self._threshold_size(name)
                if not isinstance(raw, Tensor) or raw.shape not in ((), (size,)):
                    errors.append(f"{key} has shape {getattr(raw, 'shape', None)}; expected () "
                                  f"or ({size},)")  # fmt: skip
                    continue
                self.register_parameter(
                    name + "_raw",
                    nn.Parameter(torch.zeros(raw.shape, dtype=p.dtype, device=p.device)),
                )
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing,
                                      unexpected, errors)  # fmt: skip

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, ranks={list(self.ranks)}"
        if not self.is_cell:
            s += f", num_layers={self.num_layers}"
        return s + f", blocks={self.blocks}, execution={self._execution!r}"

    # -- conversion -----------------------------------------------------------------------------
    @classmethod
    def _from_torch(cls, mod: nn.Module, rank, **kw):
        """Factor every weight of a torch GRU / LSTM (or cell) by truncated SVD; a rank equal
        to each factor's full rank reproduces it. ``approx_errors``: relative Frobenius error
        per factor; ``approx_error``: the largest."""
        cell = cls.is_cell
        if not cell:
            if mod.bidirectional:
                raise ValueError(
                    f"{type(mod).__name__}(bidirectional=True) cannot be converted: event layers "
                    "run forward in time; convert a unidirectional module"
                )
            if getattr(mod, "proj_size", 0):
                raise ValueError(
                    f"LSTM(proj_size={mod.proj_size}) cannot be converted yet; use proj_size=0"
                )
            kw.setdefault("num_layers", mod.num_layers)
            kw.setdefault("batch_first", mod.batch_first)
            kw.setdefault("dropout", float(mod.dropout))
        w = mod.weight_ih if cell else mod.weight_ih_l0
        kw.setdefault("device", w.device)
        kw.setdefault("dtype", w.dtype)
        new = cls(mod.input_size, mod.hidden_size, rank, bias=mod.bias, **kw)
        errors = {}
        with torch.no_grad():
            for li in range(new.num_layers):
                sfx = "" if cell else f"_l{li}"
                for off, side in ((0, "ih"), (4, "hh")):
                    r = new._param(li, off + 1).shape[0]
                    U, s, V, err = svd_factorize(getattr(mod, f"weight_{side}{sfx}"), r)
                    for k, t in enumerate((U, s, V)):
                        new._param(li, off + k).copy_(t)
                    if mod.bias:
                        new._param(li, off + 3).copy_(getattr(mod, f"bias_{side}{sfx}"))
                    errors[f"{side}_l{li}"] = err
        new.approx_errors = errors
        new.approx_error = max(errors.values())
        new.reset()
        return new


@register_event_layer("event_gru")
class EventGRU(_DeltaRNN):
    r"""Delta GRU on factored weights: ``nn.GRU``'s call and return, event-driven on demand.

    .. math::
        r = σ(m_{x,r} + m_{h,r}),\ z = σ(m_{x,z} + m_{h,z}),\
        n = \tanh(m_{x,n} + r ⊙ m_{h,n}),\ h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}

    with ``m_x ≈ W_ih x̂ + b_ih`` and ``m_h ≈ W_hh ĥ + b_hh`` kept by the deltas that crossed
    θ / θ_h and θ_z (exact at θ = θ_h = θ_z = 0, where it equals ``nn.GRU``).

    Args:
        input_size, hidden_size: ``n``, ``H``.
        rank: int (both factors of every layer, capped at each one's full rank), a pair
            ``(r_ih, r_hh)``, or a list of pairs (one per layer); each must be divisible by
            ``blocks`` after capping.
        num_layers: stacked layers (layer ``l+1`` reads ``h_l``). blocks: gate blocks per factor.
        threshold: θ of the input (scalar or ``(n,)``). hidden_threshold: θ_h (scalar or
            ``(num_layers·H,)``), also the input θ of the layer above. latent_threshold: θ_z
            (scalar or ``(latent_size,)``).
        bias, batch_first, dropout: as ``nn.GRU`` (dropout: dense mode, training only).
        return_state: False returns only the output (for ``nn.Sequential``).
        resync_every: steps between exact re-syncs of the accumulators (0 disables).

    Shape:
        dense: ``(T, B, n) -> ((T, B, H), (L, B, H))``; event: one step ``(B, n) -> ((B, H),
        (L, B, H))`` or a chunk ``(T, B, n)`` (see the module docstring).

    Example:
        >>> import torch, braingate as bg
        >>> from braingate.nn.event_rnn import EventGRU
        >>> gru = EventGRU(4, 8, rank=4)
        >>> xs = torch.randn(5, 2, 4)
        >>> out, h_n = gru(xs)
        >>> gru.execution = "event"
        >>> steps = torch.stack([gru(x)[0] for x in xs])
        >>> torch.allclose(steps, out, atol=1e-5)
        True
    """

    cell = "gru"

    @classmethod
    def from_gru(cls, gru: nn.GRU, rank, **kw) -> EventGRU:
        """Factor an ``nn.GRU`` by truncated SVD (full rank reproduces it)."""
        if not isinstance(gru, nn.GRU):
            raise TypeError(f"gru must be an nn.GRU, got {type(gru).__name__}")
        return cls._from_torch(gru, rank, **kw)


@register_event_layer("event_lstm")
class EventLSTM(_DeltaRNN):
    r"""Delta LSTM on factored weights: ``nn.LSTM``'s call and return, event-driven on demand.

    .. math::
        i, f, g, o = σ, σ, \tanh, σ\,(m_x + m_h),\quad c_t = f ⊙ c_{t−1} + i ⊙ g,\quad
        h_t = o ⊙ \tanh c_t

    Arguments as :class:`EventGRU` (``G = 4`` gates); ``h0`` is a tuple ``(h0, c0)`` and the
    state returned is ``(h_n, c_n)``.
    """

    cell = "lstm"

    @classmethod
    def from_lstm(cls, lstm: nn.LSTM, rank, **kw) -> EventLSTM:
        """Factor an ``nn.LSTM`` by truncated SVD (full rank reproduces it)."""
        if not isinstance(lstm, nn.LSTM):
            raise TypeError(f"lstm must be an nn.LSTM, got {type(lstm).__name__}")
        return cls._from_torch(lstm, rank, **kw)


class _Cell(_DeltaRNN):
    is_cell = True

    def __init__(self, input_size: int, hidden_size: int, rank: int | tuple[int, int], *,
                 blocks: int = 1, threshold: float | Tensor = 0.0,
                 hidden_threshold: float | Tensor = 0.0, latent_threshold: float | Tensor = 0.0,
                 bias: bool = True, return_state: bool = True, resync_every: int = 1000,
                 device=None, dtype=None) -> None:  # fmt: skip
        super().__init__(input_size, hidden_size, rank, blocks=blocks, threshold=threshold,
                         hidden_threshold=hidden_threshold, latent_threshold=latent_threshold,
                         bias=bias, return_state=return_state, resync_every=resync_every,
                         device=device, dtype=dtype)  # fmt: skip


@register_event_layer("event_gru_cell")
class EventGRUCell(_Cell):
    """Delta GRU cell: ``nn.GRUCell``'s call and return (dense), one step on its own state
    (event). Arguments as :class:`EventGRU` without ``num_layers`` / ``batch_first``."""

    cell = "gru"

    @classmethod
    def from_gru_cell(cls, cell: nn.GRUCell, rank: int | tuple[int, int], **kw) -> EventGRUCell:
        """Factor an ``nn.GRUCell`` by truncated SVD (full rank reproduces it)."""
        if not isinstance(cell, nn.GRUCell):
            raise TypeError(f"cell must be an nn.GRUCell, got {type(cell).__name__}")
        return cls._from_torch(cell, rank, **kw)


@register_event_layer("event_lstm_cell")
class EventLSTMCell(_Cell):
    """Delta LSTM cell: ``nn.LSTMCell``'s call and return ``(h, c)`` (dense), one step on its
    own state (event). Arguments as :class:`EventLSTM` without ``num_layers`` / ``batch_first``."""

    cell = "lstm"

    @classmethod
    def from_lstm_cell(cls, cell: nn.LSTMCell, rank: int | tuple[int, int], **kw) -> EventLSTMCell:
        """Factor an ``nn.LSTMCell`` by truncated SVD (full rank reproduces it)."""
        if not isinstance(cell, nn.LSTMCell):
            raise TypeError(f"cell must be an nn.LSTMCell, got {type(cell).__name__}")
        return cls._from_torch(cell, rank, **kw)


@contextmanager
def streaming(model: nn.Module, *, hx_at_start_only: bool = False):
    """Within the block, every recurrent event module of ``model`` carries its hidden state
    across calls in dense mode too, and takes a 2-D input as one step (what stepping a model one
    time step at a time needs); the previous setting is restored afterwards.

    ``hx_at_start_only``: an initial state passed to a module (``self.gru(x, h0)``,
    ``self.cell(x, h)``) is used at the first step of a stream only and ignored afterwards — a
    torch forward fed one time step at a time passes the sequence's initial state at every
    call (``bg.simulate`` sets it for models written for torch's recurrent call)."""
    mods = [m for m in model.modules() if isinstance(m, _DeltaRNN)]
    saved = [(m.stream, m.__dict__.get("hx_at_start_only", False)) for m in mods]
    for m in mods:
        m.stream = True
        m.hx_at_start_only = hx_at_start_only
    try:
        yield model
    finally:
        for m, (s, h) in zip(mods, saved, strict=True):
            m.stream, m.hx_at_start_only = s, h


register_fuser(_DeltaRNN)(fuse_delta_rnn)
