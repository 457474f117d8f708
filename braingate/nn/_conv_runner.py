"""Per-layer event runtime of a gated low-rank conv: owned state arrays, kernel arguments, counters.

One :class:`ConvRunner` belongs to one :class:`~braingate.nn.event_conv.EventConv2d` /
``EventConv1d``. The stream state lives in numpy arrays it allocates and owns (the layouts of
:mod:`braingate.runtime.conv`); the compiled op reads only those and owned copies of the factors,
bias and thresholds (:class:`_Args`, rebuilt when a version counter, the layer's epoch or the
optimizer-step count moves). The same arrays serve the layer's own event step and a compiled
chain (the runner is the chain row's ``stepper``), so both compute the same stream.

The torch path (autograd, CUDA, other dtypes) keeps a :class:`ConvEventState` of tensors instead;
switching between the two converts the state once.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from braingate.functional.conv_events import ConvEventState, conv_resync
from braingate.nn._optim_watch import optimizer_steps
from braingate.runtime import conv as _ops
from braingate.runtime.conv import CONV, LANES
from braingate.runtime.ops import Row, RunnerStepper

KERNEL_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}
_VERSION = operator.attrgetter("_version")


class _Bufs(NamedTuple):
    """The stream state in kernel layouts (see :mod:`braingate.runtime.conv`), for one batch."""

    x_hat: np.ndarray  # (B, C·H·W)
    z: np.ndarray  # (B, P·Rp) channel-last, latent channels padded to Rp (zeros)
    z_hat: np.ndarray
    y: np.ndarray  # (B, C_out·P), bias included (the output is a copy of it)
    gstate: np.ndarray  # (B, R) bool
    dirty: np.ndarray  # (B, P + 1) bool; column P: scan every position at the next step
    gate: np.ndarray  # (B, R) bool, the current gate
    counts: np.ndarray  # (B, 6) int64
    taps: np.ndarray | None = None  # the op's tap tables and int64 scratch (conv.tap_tables)
    scratch_u8: np.ndarray | None = None  # zeros: masks (their padding is never written)
    scratch_f: np.ndarray | None = None  # (None: unpickled from an older layout)


class _Args(NamedTuple):
    key: tuple
    V: np.ndarray  # (C·∏k, Rp), zero columns past R
    Us_t: np.ndarray  # (Rp, Cop), zero past R rows and C_out columns
    bias: np.ndarray
    th: np.ndarray  # (C,)
    thz: np.ndarray  # (R,)
    tracked: tuple  # tensors whose in-place edits make these copies stale


class ConvRunner:
    """State, kernel arguments and counters of one conv layer's event path."""

    def __init__(self, in_channels: int, out_channels: int, rank: int) -> None:
        self.C, self.Co, self.R = in_channels, out_channels, rank
        self.in_units = np.zeros(in_channels, np.int64)  # zeroed in place: chains hold them
        self.lat_units = np.zeros(rank, np.int64)
        self.listeners: list = []
        self.bufs: _Bufs | None = None
        self.args: _Args | None = None
        self.y_bias: np.ndarray | None = None  # the bias held in bufs.y (None: none)
        self.tstate: ConvEventState | None = None
        self.torch_counts = None
        self.spatial: tuple | None = None  # (in_spatial, out_spatial) of the stream
        self.basis: tuple | None = None
        self.restarted()

    def __getstate__(self) -> dict:
        # copies and pickles drop the chains' weak callbacks (a chain belongs to this process)
        return {**self.__dict__, "listeners": []}

    def __setstate__(self, state: dict) -> None:
        # unpickled numpy arrays may be views of the pickle's buffer; the kernel reads only
        # arrays the runtime owns, so every state array becomes an owned copy
        def own(a):
            return np.array(a, copy=True, order="C") if isinstance(a, np.ndarray) else a

        self.__dict__.update(state)
        self.in_units, self.lat_units = own(self.in_units), own(self.lat_units)
        if self.bufs is not None:
            self.bufs = _Bufs(*map(own, self.bufs))
        if self.args is not None:
            self.args = self.args._replace(**{f: own(getattr(self.args, f))
                                             for f in ("V", "Us_t", "bias", "th", "thz")})  # fmt: skip
        self.y_bias = own(self.y_bias)

    @property
    def Rp(self) -> int:
        """The rank padded to whole SIMD vectors (:data:`~braingate.runtime.conv.LANES`)."""
        return -(-self.R // LANES) * LANES

    @property
    def Cop(self) -> int:
        """Output channels padded to whole SIMD vectors."""
        return -(-self.Co // LANES) * LANES

    # -- stream bookkeeping (also the ``stepper`` of a chain row) --------------------------------
    def restarted(self) -> None:
        self.fresh = True
        self.steps = 0
        self.resync_ops = 0.0  # summed over samples
        self.last = None  # "kernel" | "torch": who wrote the last counts

    def notify(self) -> None:
        """Run the callbacks in ``listeners`` (weak references; a stream ends)."""
        live = []
        for ref in self.listeners:
            cb = ref()
            if cb is not None:
                live.append(ref)
                cb()
        self.listeners = live

    def zeroable(self) -> bool:
        return self.bufs is not None

    def started(self) -> None:
        self.fresh = False
        self.last = "kernel"

    def advance(self, layer, p: int) -> int:
        """``p`` steps ran: count them, re-sync when due; steps until the next re-sync."""
        k = layer.resync_every
        before, self.steps = self.steps, self.steps + p
        if k and before // k != self.steps // k:
            self.resync(layer)
        return k - self.steps % k if k else 1 << 62

    def reset(self, gate: Tensor | None, drop: bool = False) -> None:
        """Zero the stream (in place when the kernel state exists), counters cleared."""
        self.notify()
        if self.bufs is not None and not drop:
            b = self.bufs
            for a in (b.x_hat, b.z, b.z_hat, b.y, b.counts):
                a.fill(0)
            self._add_bias(self.y_bias)  # a zero state outputs the bias
            b.dirty.fill(False)
            if gate is not None and gate.dim() == 2 and gate.shape[0] != b.gate.shape[0]:
                self.bufs = None  # a per-sample gate of another batch: a new stream
            else:
                b.gate[:] = True if gate is None else gate.detach().cpu().numpy()
                b.gstate[:] = b.gate
        else:
            self.bufs = None
        self.tstate = None
        self.torch_counts = None
        self.spatial = None if self.bufs is None else self.spatial
        self.in_units.fill(0)
        self.lat_units.fill(0)
        self.restarted()

    # -- stream shape --------------------------------------------------------------------------
    def check_stream(self, x_shape: tuple, out_spatial: tuple) -> None:
        """Raise if the batch or spatial size changed mid-stream; forget the state of a fresh
        stream (reset, not stepped yet) whose size differs."""
        B, sp = x_shape[0], tuple(x_shape[2:])
        known = self.known_batch()
        if known is None:
            return
        if (known != B or self.spatial[0] != sp) and self.fresh:
            self.bufs, self.tstate, self.spatial = None, None, None
            return
        if self.spatial[0] != sp:
            raise ValueError(
                f"input spatial size {sp} differs from this stream's {self.spatial[0]}; call "
                "layer.reset() (or bg.reset(model)) before a stream of another size"
            )
        if known != B:
            raise ValueError(
                f"batch size changed from {known} to {B} mid-stream; call layer.reset() (or "
                "bg.reset(model)) before a new stream"
            )

    def known_batch(self) -> int | None:
        if self.bufs is not None:
            return self.bufs.x_hat.shape[0]
        if self.tstate is not None:
            return self.tstate.x_hat.shape[0]
        return None

    # -- kernel arguments ------------------------------------------------------------------------
    def prepare(self, layer, x_shape: tuple, dtype: torch.dtype) -> None:
        """Make ``bufs`` and ``args`` current for a kernel step on ``x_shape``."""
        B, sp = x_shape[0], tuple(x_shape[2:])
        out_sp = layer.out_spatial(sp)
        self.check_stream(x_shape, out_sp)
        gate = layer.gate_units()
        if gate.dim() == 2 and gate.shape[0] != B:
            raise ValueError(
                f"per-sample gate for B={gate.shape[0]} does not match batch {B}; call "
                "set_active_blocks with a (B, blocks) mask for this batch"
            )
        f = KERNEL_DTYPES[dtype]
        if self.bufs is not None and self.bufs.taps is None:  # pickled by an older version
            self.bufs, self.spatial = None, None
        if self.bufs is not None and self.bufs.x_hat.dtype != f:
            self.tstate, self.bufs = self.to_torch(), None
        if self.bufs is None:
            self._allocate(B, sp, out_sp, f, gate, layer.kernel_geometry())
        self._arguments(layer, gate, f)

    def _allocate(self, B, sp, out_sp, f, gate, kg: dict) -> None:
        P, R, C, Co, Rp = int(np.prod(out_sp)), self.R, self.C, self.Co, self.Rp
        n_in = C * int(np.prod(sp))
        H, W = (1, *sp) if len(sp) == 1 else sp
        Ho, Wo = (1, *out_sp) if len(out_sp) == 1 else out_sp
        taps = _ops.tap_tables(H, W, Ho, Wo, R, **kg)
        n_int, n_u8, n_f = _ops.scratch_sizes(C, H, W, Ho, Wo, R, Rp, self.Cop, kg["kh"], kg["kw"])
        if taps.shape != (n_int,):  # never expected: the kernel views n_int entries
            raise RuntimeError(f"conv tap tables have {taps.shape}, expected ({n_int},)")
        g = np.array(np.broadcast_to(gate.detach().cpu().numpy(), (B, R)), order="C")
        self.bufs = _Bufs(np.zeros((B, n_in), f), np.zeros((B, P * Rp), f),
                          np.zeros((B, P * Rp), f), np.zeros((B, Co * P), f), g.copy(),
                          np.zeros((B, P + 1), np.bool_), g, np.zeros((B, 6), np.int64),
                          np.ascontiguousarray(taps, np.int64), np.zeros(n_u8, np.bool_),
                          np.zeros(n_f, f))  # fmt: skip
        self.spatial = (sp, out_sp)
        self.y_bias = None
        if self.tstate is not None:  # the torch path ran last: adopt its state
            self._from_torch(self.tstate)
            self.tstate = None
        if self.args is not None:  # arguments still current: their bias goes into y now
            self._add_bias(self.args.bias)
            self.y_bias = self.args.bias

    def _arguments(self, layer, gate: Tensor, f) -> None:
        P = layer._parameters
        U, s, V, b = P["U"], P["s"], P["V"], P["bias"]
        tracked = (U, s, V, *(() if b is None else (b,)), *layer.threshold_tensors())
        key = (tuple(map(id, tracked)), sum(map(_VERSION, tracked)), layer._epoch,
               optimizer_steps(), f)  # fmt: skip
        basis = (id(U), U._version, id(s), s._version, id(V), V._version, optimizer_steps())
        if basis != self.basis:
            stale = self.basis is not None and not self.fresh
            self.basis = basis
            if stale:
                self.resync(layer)  # the accumulators were built with the old factors
        if self.args is not None and self.args.key == key:
            return
        with torch.no_grad():
            Vn = _padded(_taps_reversed(V, layer.kernel_geometry()["kw"]), (V.shape[0], self.Rp), f)
            Us_t = _padded((U * s).t(), (self.Rp, self.Cop), f)
            bias = np.zeros(self.Co, f) if b is None else _owned(b, f)
            th = _vector(layer.threshold, self.C, f)
            thz = _vector(layer.latent_threshold, self.R, f)
        bufs = self.bufs
        g = gate.detach().cpu().numpy()
        if self.fresh:
            bufs.gstate[:] = g  # a zero state is consistent with any gate
        bufs.gate[:] = g
        bufs.dirty[:, -1] = True  # new thresholds may put old residues above them
        self._add_bias(bias if self.y_bias is None else bias - self.y_bias)
        self.y_bias = bias
        self.args = _Args(key, Vn, Us_t, bias, th, thz, tracked)

    def _add_bias(self, bias: np.ndarray | None) -> None:
        """``bufs.y += bias`` per output channel (the kernel's output is a copy of ``y``)."""
        if bias is not None and self.bufs is not None:
            y = self.bufs.y
            y.reshape(y.shape[0], self.Co, -1)[:] += bias.reshape(1, -1, 1)

    def row_values(self, layer) -> tuple[list, tuple]:
        """The :data:`~braingate.runtime.conv.CONV` row and the arrays whose addresses it holds."""
        b, a = self.bufs, self.args
        (sp, out_sp), kg = self.spatial, layer.kernel_geometry()
        H, W = (1, *sp) if len(sp) == 1 else sp
        Ho, Wo = (1, *out_sp) if len(out_sp) == 1 else out_sp
        arrays = dict(x_hat=b.x_hat, z=b.z, z_hat=b.z_hat, y=b.y, gstate=b.gstate, dirty=b.dirty,
                      gate=b.gate, V=a.V, Us_t=a.Us_t, bias=a.bias, th=a.th, thz=a.thz,
                      counts=b.counts, in_units=self.in_units, lat_units=self.lat_units,
                      taps=b.taps, scratch_u8=b.scratch_u8, scratch_f=b.scratch_f)  # fmt: skip
        for name, arr in arrays.items():  # the kernel reads these by address
            if not (arr.flags.c_contiguous and arr.flags.owndata):  # never expected
                raise RuntimeError(f"conv kernel array {name} is not an owned C array")
        values = CONV.pack(
            in_size=self.C * H * W, out_size=self.Co * Ho * Wo, C=self.C, H=H, W=W, Co=self.Co,
            Ho=Ho, Wo=Wo, R=self.R, Rp=self.Rp, Cop=self.Cop, **kg,
            pixel=int(layer.granularity == "pixel"),
            **{k: v.ctypes.data for k, v in arrays.items()},
        )  # fmt: skip
        return values, tuple(arrays.values())

    def chain_row(self, layer, B: int, in_shape: tuple, dtype: torch.dtype) -> Row:
        """This layer lowered for a compiled chain (same arrays as its own event step)."""
        self.prepare(layer, (B, *in_shape), dtype)
        values, keep = self.row_values(layer)
        out_shape = (self.Co, *self.spatial[1])
        watch = ((self.__dict__, "bufs", self.bufs), (self.__dict__, "args", self.args),
                 (layer.__dict__, "_execution", layer._execution),
                 (layer.__dict__, "_granularity", layer.granularity),
                 (layer.__dict__, "resync_every", layer.resync_every),
                 (layer.__dict__, "_runner", self))  # fmt: skip
        return Row("event_conv", values, keep, tuple(in_shape), out_shape, watch,
                   self.args.tracked, ((layer.__dict__, "_epoch"),), (), _Stepper(self, layer))  # fmt: skip

    # -- conversions between the kernel and torch states ------------------------------------------
    def to_torch(self) -> ConvEventState | None:
        """The kernel state as a :class:`ConvEventState` of new tensors (NCHW)."""
        b = self.bufs
        if b is None:
            return self.tstate
        B = b.x_hat.shape[0]
        sp, out_sp = self.spatial
        t = torch.from_numpy
        z = t(b.z).reshape(B, *out_sp, self.Rp)[..., : self.R].movedim(-1, 1).clone()
        z_hat = t(b.z_hat).reshape(B, *out_sp, self.Rp)[..., : self.R].movedim(-1, 1).clone()
        y = t(b.y).reshape(B, self.Co, *out_sp).clone()
        if self.y_bias is not None:
            y -= t(self.y_bias).reshape(-1, *([1] * len(out_sp)))
        return ConvEventState(t(b.x_hat).reshape(B, self.C, *sp).clone(), z, z_hat, y,
                              t(b.gstate).clone())  # fmt: skip

    def _from_torch(self, st: ConvEventState) -> None:
        b = self.bufs
        B = b.x_hat.shape[0]
        with torch.no_grad():
            b.x_hat[:] = st.x_hat.detach().reshape(B, -1).cpu().numpy()
            for dst, src in ((b.z, st.z), (b.z_hat, st.z_hat)):
                dst.reshape(B, -1, self.Rp)[..., : self.R] = (
                    src.detach().movedim(1, -1).reshape(B, -1, self.R).cpu().numpy()
                )
            b.y[:] = st.y.detach().reshape(B, -1).cpu().numpy()
            b.gstate[:] = st.gate.detach().cpu().numpy()
        self._add_bias(self.y_bias)
        b.dirty[:, -1] = True

    def resync(self, layer) -> None:
        """Recompute ``z`` and ``y`` exactly from ``x̂`` and ``ẑ`` (in place for the kernel
        state, so chains keep their addresses)."""
        st = self.to_torch() if self.bufs is not None else self.tstate
        if st is None:
            return
        geom = layer.geometry()
        with torch.no_grad():
            new = conv_resync(st, layer.U.detach().to(st.y.dtype), layer.s.detach().to(st.y.dtype),
                              layer.V.detach().to(st.y.dtype), geom)  # fmt: skip
        if self.bufs is not None:
            self._from_torch(new)
        else:
            self.tstate = ConvEventState(*(t.detach() for t in new))
        active = st.gate.sum(-1).double()
        P = int(np.prod(self.spatial[1])) if self.spatial else st.y[0, 0].numel()
        per = (layer.V.shape[0] + self.Co) * P
        self.resync_ops += float((active * per).sum())


class _Stepper(RunnerStepper):
    """A chain row's bookkeeping hooks for one conv layer (see :class:`~braingate.runtime.Row`)."""

    __slots__ = ("layer",)

    def __init__(self, runner: ConvRunner, layer) -> None:
        self.runner, self.layer = runner, layer

    def started(self) -> None:
        self.runner.started()

    def advance(self, p: int) -> int:
        return self.runner.advance(self.layer, p)

    def restarted(self) -> None:
        self.runner.restarted()


def _owned(t: Tensor, f) -> np.ndarray:
    """A C-contiguous numpy copy of ``t`` with dtype ``f`` that the runtime owns."""
    return np.array(t.detach().cpu().numpy(), dtype=f, order="C", copy=True)


def _taps_reversed(V: Tensor, kw: int) -> Tensor:
    """``V``'s rows ``(c, k_h, k_w)`` with ``k_w`` reversed: the taps of one kernel row then
    reach adjacent outputs in ascending order (the kernel's contiguous row updates)."""
    return V.reshape(-1, kw, V.shape[1]).flip(1).reshape(V.shape)


def _padded(t: Tensor, shape: tuple, f) -> np.ndarray:
    """An owned C-contiguous ``shape`` array of dtype ``f`` holding ``t`` in its leading corner,
    zeros elsewhere (the kernel's padded factor layouts)."""
    out = np.zeros(shape, f)
    src = t.detach().cpu().numpy()
    out[: src.shape[0], : src.shape[1]] = src
    return out


def _vector(value, size: int, f) -> np.ndarray:
    """A scalar or ``(size,)`` threshold as an owned ``(size,)`` array."""
    if isinstance(value, Tensor):
        arr = value.detach().cpu().numpy().astype(f).reshape(-1)
        return np.full(size, arr[0], f) if arr.size == 1 else np.array(arr, f, order="C")
    return np.full(size, value, f)
