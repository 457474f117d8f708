"""The compiled delta GRU / LSTM step (DESIGN §2c) as a chain op: ``delta_rnn``.

One op steps a whole stack of recurrent layers (a cell is a stack of one): for each layer, the
hidden factor's event step on ``h_{t−1}`` and the input factor's event step on ``x_t`` (both
:func:`braingate.functional._kernels.event_step_np`, the compiled step of DESIGN §2, which
keeps the pre-activation memories ``m_h`` / ``m_x`` up to date), then the gates elementwise,
``h_t`` written in place into the layer's hidden state and passed to the next layer. The torch
reference is :func:`braingate.functional.rnn_events.delta_rnn_step`.

The op's descriptor row (:data:`RNN`) holds the number of layers, the cell type and the address
of a per-layer table (:data:`RNN_LAYER`, one int64 row per layer: sizes and the addresses of the
layer's state, factor copies, thresholds and counters). Every address belongs to an array the
module's runner allocated and owns (``braingate.nn.event_rnn``), kept alive by the row.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from braingate.functional import _kernels
from braingate.runtime.chain import chain_kernels
from braingate.runtime.layout import Layout
from braingate.runtime.ops import OPS, Op, RunnerStepper
from braingate.runtime.ptr import AVAILABLE, view

__all__ = ["RNN", "RNN_LAYER", "RNNRunner", "fuse_delta_rnn"]

#: The op's row: ``layers`` (L), ``lstm`` (1 for an LSTM, 0 for a GRU), ``sub`` (address of the
#: ``(L, len(RNN_LAYER))`` int64 layer table) and ``resync`` (address of the ``(B,)`` int64
#: re-sync work of this step, zeroed at every step and written by the runner's re-syncs).
RNN = Layout("delta_rnn", "sig layers lstm sub resync")

#: One layer's row in the table. ``in_size`` = n, ``out_size`` = H, ``G`` gates, ranks ``Rx``,
#: ``Rh``. Input factor: ``x_hat`` (B, n), ``zx`` / ``zx_hat`` (B, Rx), ``yx`` (B, G·H) (the
#: memory ``m_x`` without bias), ``gsx`` / ``gx`` (B, Rx) bool gate state and gate, ``Vx`` (n, Rx),
#: ``Usx_t`` (Rx, G·H), ``bx`` (G·H), ``thx`` (n), ``thzx`` (Rx); hidden factor likewise with
#: ``h``. ``hidden`` / ``cell`` (B, H): ``h_{t−1}`` and the LSTM cell. Counters (int64):
#: ``counts_x`` / ``counts_h`` (B, 5) in :data:`braingate.state.COUNT_FIELDS` order, events per
#: unit ``units_x`` (n), ``units_h`` (H), ``lat_x`` (Rx), ``lat_h`` (Rh). Scratch of the step
#: (contents never read across steps): ``mx`` / ``mh`` (B, G·H) the memories with bias,
#: ``buf`` (G·H) float and ``bits`` (G·H) int32 for the gates.
RNN_LAYER = Layout(
    "delta_rnn_layer",
    "G Rx Rh x_hat zx zx_hat yx gsx gx Vx Usx_t bx thx thzx "
    "h_hat zh zh_hat yh gsh gh Vh Ush_t bh thh thzh hidden cell "
    "counts_x counts_h units_x units_h lat_x lat_h mx mh buf bits",
)

_W = len(RNN_LAYER)
#: Fingerprint of both layouts, compiled into the kernels and written into every row (``sig``):
#: a kernel compiled for another layout (a stale on-disk numba cache) refuses the row instead of
#: reading addresses from the wrong columns.
_SIG = zlib.crc32(" ".join(RNN.fields + RNN_LAYER.fields).encode()) & 0x3FFFFFFF

if AVAILABLE:
    from numba import njit

    C, A = RNN.at, RNN_LAYER.at
    _event_step = _kernels.event_step_np

    # float32 gates: a branch-free exp that LLVM vectorises (no SVML in numba's default build,
    # and a scalar libm call per gate unit costs more than the whole sparse update): exp(x) =
    # 2^m · p(r), m = round(x/ln 2), r = x − m·ln 2 (ln 2 split in a short hi part and a
    # correction so m·ln2_hi is exact), p the degree-7 Taylor polynomial (|r| ≤ ln2/2: relative
    # error < 1e-7), 2^m built in the exponent bits. Measured sigmoid error < 1e-7 on [−100, 100]
    # (tests/rnn). float64 keeps libm's exp / tanh (exact to rounding).
    _LOG2E = np.float32(1.4426950408889634)
    _LN2_HI = np.float32(0.693359375)  # 0.693359375 = 355/512: m·LN2_HI is exact for |m| < 2^15
    _LN2_LO = np.float32(math.log(2.0) - 0.693359375)
    _P = tuple(np.float32(1.0 / math.factorial(k)) for k in range(8))
    _P2, _P3, _P4, _P5, _P6, _P7 = _P[2:]
    _ONE = np.float32(1.0)
    _I32 = np.zeros(1, np.int32)  # type witness of the int32 scratch

    @njit(nogil=True, cache=True)
    def _sigmoid_f32(v, bits, lo, hi):
        """``v[lo:hi] ← σ(v[lo:hi])`` with the vectorisable exp above (``bits``: int32 scratch)."""
        for k in range(lo, hi):
            x = min(max(-v[k], np.float32(-87.0)), np.float32(87.0))
            m = np.floor(x * _LOG2E + np.float32(0.5))
            r = x - m * _LN2_HI - m * _LN2_LO
            p = _ONE + r * (
                _ONE + r * (_P2 + r * (_P3 + r * (_P4 + r * (_P5 + r * (_P6 + r * _P7)))))
            )
            bits[k] = (np.int32(m) + np.int32(127)) << np.int32(23)
            v[k] = p
        scale = bits.view(np.float32)
        for k in range(lo, hi):
            v[k] = _ONE / (_ONE + v[k] * scale[k])

    @njit(nogil=True, cache=True)
    def _gates_f32(mx, mh, hidden, c, lstm, out, buf, bits):
        """The GRU / LSTM update of every sample (float32, vectorised exp; ``buf`` float and
        ``bits`` int32 scratch of ``G·H``)."""
        B, H = hidden.shape
        G = 4 if lstm else 3
        two = np.float32(2.0)
        for b in range(B):
            if lstm:
                for k in range(G * H):
                    buf[k] = mx[b, k] + mh[b, k]
                for k in range(2 * H, 3 * H):
                    buf[k] *= two  # tanh(g) = 2σ(2g) − 1
                _sigmoid_f32(buf, bits, 0, G * H)
                for k in range(H):
                    cn = buf[H + k] * c[b, k] + buf[k] * (two * buf[2 * H + k] - _ONE)
                    c[b, k] = cn
                    buf[2 * H + k] = two * cn
                _sigmoid_f32(buf, bits, 2 * H, 3 * H)
                for k in range(H):
                    hn = buf[3 * H + k] * (two * buf[2 * H + k] - _ONE)
                    hidden[b, k] = hn
                    out[b, k] = hn
            else:
                for k in range(2 * H):
                    buf[k] = mx[b, k] + mh[b, k]
                _sigmoid_f32(buf, bits, 0, 2 * H)
                for k in range(H):
                    buf[2 * H + k] = two * (mx[b, 2 * H + k] + buf[k] * mh[b, 2 * H + k])
                _sigmoid_f32(buf, bits, 2 * H, 3 * H)
                for k in range(H):
                    z = buf[H + k]
                    hn = (_ONE - z) * (two * buf[2 * H + k] - _ONE) + z * hidden[b, k]
                    hidden[b, k] = hn
                    out[b, k] = hn

    @njit(nogil=True, cache=True)
    def _gates_libm(mx, mh, hidden, c, lstm, out):
        """The GRU / LSTM update of every sample with libm's exp / tanh (float64)."""
        B, H = hidden.shape
        for b in range(B):
            for k in range(H):
                if lstm:
                    i = 1.0 / (1.0 + math.exp(-(mx[b, k] + mh[b, k])))
                    fg = 1.0 / (1.0 + math.exp(-(mx[b, H + k] + mh[b, H + k])))
                    gg = math.tanh(mx[b, 2 * H + k] + mh[b, 2 * H + k])
                    o = 1.0 / (1.0 + math.exp(-(mx[b, 3 * H + k] + mh[b, 3 * H + k])))
                    cn = fg * c[b, k] + i * gg
                    c[b, k] = cn
                    hn = o * math.tanh(cn)
                else:
                    r = 1.0 / (1.0 + math.exp(-(mx[b, k] + mh[b, k])))
                    z = 1.0 / (1.0 + math.exp(-(mx[b, H + k] + mh[b, H + k])))
                    n_ = math.tanh(mx[b, 2 * H + k] + r * mh[b, 2 * H + k])
                    hn = (1.0 - z) * n_ + z * hidden[b, k]
                hidden[b, k] = hn
                out[b, k] = hn

    @njit(nogil=True, cache=True)
    def _layer_step(x, d, f, g, lstm, out):
        """One layer: both factors' event steps, then the gates; ``out`` receives ``h_t``."""
        B = x.shape[0]
        n, H, G, Rx, Rh = d[A.in_size], d[A.out_size], d[A.G], d[A.Rx], d[A.Rh]
        GH = G * H
        hidden = view(d[A.hidden], f, (B, H))
        mh = view(d[A.mh], f, (B, GH))
        mx = view(d[A.mx], f, (B, GH))
        _event_step(
            hidden, view(d[A.h_hat], f, (B, H)), view(d[A.zh], f, (B, Rh)),
            view(d[A.zh_hat], f, (B, Rh)), view(d[A.yh], f, (B, GH)),
            view(d[A.gsh], g, (B, Rh)), view(d[A.gh], g, (B, Rh)), view(d[A.Vh], f, (H, Rh)),
            view(d[A.Ush_t], f, (Rh, GH)), view(d[A.bh], f, (GH,)), view(d[A.thh], f, (H,)),
            view(d[A.thzh], f, (Rh,)), mh, view(d[A.counts_h], d, (B, 5)),
            view(d[A.units_h], d, (H,)), view(d[A.lat_h], d, (Rh,)),
        )  # fmt: skip
        _event_step(
            x, view(d[A.x_hat], f, (B, n)), view(d[A.zx], f, (B, Rx)),
            view(d[A.zx_hat], f, (B, Rx)), view(d[A.yx], f, (B, GH)),
            view(d[A.gsx], g, (B, Rx)), view(d[A.gx], g, (B, Rx)), view(d[A.Vx], f, (n, Rx)),
            view(d[A.Usx_t], f, (Rx, GH)), view(d[A.bx], f, (GH,)), view(d[A.thx], f, (n,)),
            view(d[A.thzx], f, (Rx,)), mx, view(d[A.counts_x], d, (B, 5)),
            view(d[A.units_x], d, (n,)), view(d[A.lat_x], d, (Rx,)),
        )  # fmt: skip
        c = view(d[A.cell], f, (B, H))
        if f.itemsize == 4:
            _gates_f32(mx, mh, hidden, c, lstm, out, view(d[A.buf], f, (GH,)),
                       view(d[A.bits], _I32, (GH,)))  # fmt: skip
        else:
            _gates_libm(mx, mh, hidden, c, lstm, out)

    @njit(nogil=True, cache=True)
    def _step(h, row, f, g):
        if row[C.sig] != _SIG:
            raise RuntimeError("delta_rnn kernel compiled for another row layout: clear the cache")
        B = h.shape[0]
        L = row[C.layers]
        sub = view(row[C.sub], row, (L, _W))
        view(row[C.resync], row, (B,))[:] = 0
        lstm = row[C.lstm] == 1
        x = h
        for layer in range(L):
            d = sub[layer]
            out = np.empty((B, d[A.out_size]), f.dtype)
            _layer_step(x, d, f, g, lstm, out)
            x = out
        return x

    @njit(nogil=True, cache=True)
    def _reset(B, row, f, g):
        if row[C.sig] != _SIG:
            raise RuntimeError("delta_rnn kernel compiled for another row layout: clear the cache")
        L = row[C.layers]
        sub = view(row[C.sub], row, (L, _W))
        for layer in range(L):
            d = sub[layer]
            n, H, G, Rx, Rh = d[A.in_size], d[A.out_size], d[A.G], d[A.Rx], d[A.Rh]
            GH = G * H
            view(d[A.x_hat], f, (B * n,))[:] = 0
            view(d[A.zx], f, (B * Rx,))[:] = 0
            view(d[A.zx_hat], f, (B * Rx,))[:] = 0
            view(d[A.yx], f, (B * GH,))[:] = 0
            view(d[A.gsx], g, (B * Rx,))[:] = view(d[A.gx], g, (B * Rx,))
            view(d[A.h_hat], f, (B * H,))[:] = 0
            view(d[A.zh], f, (B * Rh,))[:] = 0
            view(d[A.zh_hat], f, (B * Rh,))[:] = 0
            view(d[A.yh], f, (B * GH,))[:] = 0
            view(d[A.gsh], g, (B * Rh,))[:] = view(d[A.gh], g, (B * Rh,))
            view(d[A.hidden], f, (B * H,))[:] = 0
            view(d[A.cell], f, (B * H,))[:] = 0
            view(d[A.units_x], d, (n,))[:] = 0
            view(d[A.units_h], d, (H,))[:] = 0
            view(d[A.lat_x], d, (Rx,))[:] = 0
            view(d[A.lat_h], d, (Rh,))[:] = 0
        view(row[C.resync], row, (B,))[:] = 0

    OPS.add("delta_rnn", Op("delta_rnn", RNN, _step, _reset))


def fuse_delta_rnn(module, B: int, dtype, in_shape):
    """Fuser of the recurrent event modules (registered by ``braingate.nn.event_rnn``): the
    module lowers itself (its runner owns every array the row points to)."""
    return module._lower(B, dtype, tuple(in_shape))


# -- the runner: state, counters and compiled stepping of one recurrent module -------------------
_STATE = ("x_hat", "zx", "zx_hat", "yx", "gsx", "h_hat", "zh", "zh_hat", "yh", "gsh", "hidden",
          "cell")  # fmt: skip
_ARGS = ("gx", "Vx", "Usx_t", "bx", "thx", "thzx", "gh", "Vh", "Ush_t", "bh", "thh", "thzh")
_UNITS = ("units_x", "units_h", "lat_x", "lat_h")
_NP = {torch.float32: np.float32, torch.float64: np.float64}
_WITNESS = {
    torch.float32: (np.zeros(1, np.float32), np.zeros(1, np.bool_)),
    torch.float64: (np.zeros(1, np.float64), np.zeros(1, np.bool_)),
}


def _copy(t, dtype) -> np.ndarray:
    """An owned C-contiguous numpy copy of a tensor (never a view of user-visible memory)."""
    return np.array(t.detach().cpu().numpy(), dtype=dtype, copy=True, order="C")


def _per_unit(value, size: int, dtype) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        arr = value.detach().cpu().numpy().astype(dtype).reshape(-1)
        return np.full(size, arr[0], dtype) if arr.size == 1 else np.array(arr, copy=True)
    return np.full(size, value, dtype)


def _map_state(st, fn):
    """``fn`` applied to every tensor of a (nested) state NamedTuple."""
    if isinstance(st, torch.Tensor):
        return fn(st)
    if isinstance(st, tuple):
        parts = [_map_state(v, fn) for v in st]
        return type(st)(*parts) if hasattr(st, "_fields") else tuple(parts)
    return st


class _Stepper(RunnerStepper):
    """Step bookkeeping of a recurrent module stepped by a compiled chain (see ``Row.stepper``)."""

    __slots__ = ("module",)

    def __init__(self, module, runner) -> None:
        self.module, self.runner = module, runner

    def started(self) -> None:
        self.runner.fresh = False

    def advance(self, p: int) -> int:
        r, k = self.runner, self.module.resync_every
        r.steps += p
        if not k:
            return 1 << 62
        if (r.steps - p) // k != r.steps // k:
            r.resync(self.module)  # in place: the chain's addresses stay valid
        return k - r.steps % k

    def restarted(self) -> None:
        self.runner.restarted(fresh=True)


class RNNRunner:
    """Event state and counters of one recurrent event module (one per instance, never shared).

    The state lives in one of two places: numpy arrays this runner allocates and owns
    (``where == "arrays"``: the compiled op steps them in place, module calls and compiled chains
    alike) or torch tensors (``where == "torch"``: the reference path, under autograd or off
    CPU). Moving between them copies; ``where is None`` is the zero state of a new stream.
    Counters are numpy arrays in either case: ``counts`` ``(L, 2, B, 5)`` (per layer, input and
    hidden factor, :data:`braingate.state.COUNT_FIELDS`), per-unit event counts and the re-sync
    work of the last step.

    The module supplies (duck-typed): ``cell``, ``num_layers``, ``hidden_size``, ``gates``,
    ``_sizes()`` ``[(n, R_x, R_h)]``, ``_factors(l, B)``, ``_layer_thresholds(l)``,
    ``_tracked()``, ``_factor_tensors()``, ``_epoch``, ``resync_every``, ``init_state``,
    ``_reference``.
    """

    def __init__(self) -> None:
        from braingate.nn._optim_watch import optimizer_steps

        self._opt = optimizer_steps
        self.listeners: list = []
        self._drop()
        self.restarted(fresh=True)

    # -- lifecycle ------------------------------------------------------------------------------
    def _drop(self) -> None:
        self.where: str | None = None
        self.state: tuple | None = None  # torch layer states (where == "torch")
        self.arrays: list | None = None  # per layer {name: array} (where == "arrays")
        self.args: list | None = None  # per layer factor copies for the kernel
        self.B: int | None = None
        self.counts: np.ndarray | None = None
        self.units: list | None = None
        self.resync_buf: np.ndarray | None = None
        self.carry: tuple | None = None  # dense streaming: (h (L, B, H), c or None)
        self._forget_row()
        self.basis = None

    def _forget_row(self) -> None:
        self.key = None
        self.desc = None
        self.row = None
        self.keep: tuple = ()

    def restarted(self, fresh: bool) -> None:
        self.fresh = fresh  # no step since the reset: the batch size may still change
        self.steps = 0
        self.resync_ops = 0  # summed over samples
        self.counted = False  # last_counts is None until a step ran

    def notify(self) -> None:
        """Run the callbacks in ``listeners`` (a stream ends); drop those whose owner is gone."""
        live = []
        for ref in self.listeners:
            cb = ref()
            if cb is not None:
                live.append(ref)
                cb()
        self.listeners = live

    def zeroable(self) -> bool:
        return self.where == "arrays" and self.arrays is not None

    def reset(self, drop: bool = False) -> None:
        """A new stream: zero state (in place when the kernel owns it), counters cleared."""
        self.notify()
        if not drop and self.zeroable():
            for a, g in zip(self.arrays, self.args, strict=True):
                for k in _STATE:
                    a[k][...] = 0
                a["gsx"][...] = g["gx"]
                a["gsh"][...] = g["gh"]
            for u in self.units:
                for k in _UNITS:
                    u[k][...] = 0
            self.counts[...] = 0
            self.resync_buf[...] = 0
            self.carry = None
            self.basis = None
        else:
            self._drop()
        self.restarted(fresh=True)

    def convert_state(self, m, fn) -> None:
        """After ``module._apply(fn)`` (``.to()``, ``.double()``, ``.share_memory()``): the
        stream's state becomes torch tensors converted by ``fn`` and the stream continues; the
        compiled row is rebuilt from them at the next step (the factor copies changed anyway)."""
        if self.where == "arrays":
            states = tuple(_map_state(st, lambda t: t.clone()) for st in self._torch_states(m))
        elif self.where == "torch":
            states = self.state
        else:
            states = None
        carry = self.carry
        self.arrays, self.args = None, None
        self._forget_row()
        self.basis = None  # the accumulators are kept, not re-synced with the new factors
        if states is not None:
            self.state = tuple(_map_state(st, fn) for st in states)
            self.where = "torch"
        if carry is not None:
            self.carry = tuple(None if t is None else fn(t) for t in carry)

    def __getstate__(self) -> dict:
        # copies and pickles drop what holds addresses (they would point into the original)
        d = self.__dict__.copy()
        d.update(key=None, desc=None, row=None, keep=(), listeners=[], _opt=None)
        return d

    def __setstate__(self, d: dict) -> None:
        from braingate.nn._optim_watch import optimizer_steps

        self.__dict__.update(d)
        self._opt = optimizer_steps

    # -- batch, counters ------------------------------------------------------------------------
    def prepare(self, m, B: int) -> None:
        """Counters for batch ``B``; a new batch size mid-stream raises (state untouched)."""
        if self.B is not None and self.B != B:
            if not self.fresh:
                raise ValueError(
                    f"batch size changed from {self.B} to {B} mid-stream; call reset() (or "
                    "bg.reset(model)) before a new stream"
                )
            self._drop()
        if self.B is None:
            L = m.num_layers
            self.B = B
            self.counts = np.zeros((L, 2, B, 5), np.int64)
            self.resync_buf = np.zeros(B, np.int64)
            self.units = [
                {"units_x": np.zeros(n, np.int64), "units_h": np.zeros(m.hidden_size, np.int64),
                 "lat_x": np.zeros(rx, np.int64), "lat_h": np.zeros(rh, np.int64)}
                for n, rx, rh in m._sizes()
            ]  # fmt: skip

    # -- the compiled path ----------------------------------------------------------------------
    def _key(self, m, B: int, dtype) -> tuple:
        return (m._epoch, sum(t._version for t in m._tracked()), self._opt(), B, dtype)

    def _basis(self, m) -> tuple:
        return (tuple((id(t), t._version) for t in m._factor_tensors()), self._opt())

    def ready(self, m, B: int, dtype) -> bool:
        """The compiled step's row is current for ``m``, batch ``B`` and ``dtype`` (a cheap
        test: epochs, version counters, optimizer steps)."""
        return (
            self.desc is not None and self.where == "arrays" and self.key == self._key(m, B, dtype)
        )

    def build(self, m, B: int, dtype) -> str:
        """Make the compiled step current: factor copies, the state in owned arrays, the row.
        Returns "" or why it cannot (never expected)."""
        if not AVAILABLE:
            return "the compiled kernels (numba) are not available"
        key = self._key(m, B, dtype)
        dt = _NP[dtype]
        self.args = [self._layer_args(m, layer, B, dt) for layer in range(m.num_layers)]
        if self.where != "arrays" or self.arrays is None or self.arrays[0]["hidden"].dtype != dt:
            self._adopt(m, B, dt)
        basis = self._basis(m)
        if self.basis is not None and basis != self.basis:
            self.resync(m)  # the factors changed mid-stream: the accumulators used the old ones
        self.basis = basis
        reason = self._pack(m, B)
        if reason:
            return reason
        self.key = key
        return ""

    def _layer_args(self, m, layer: int, B: int, dt) -> dict:
        ih, hh = m._factors(layer, B)
        thx, thh, thzx, thzh = m._layer_thresholds(layer)
        n, Rx, Rh = m._sizes()[layer]
        GH = m.gates * m.hidden_size
        out = {}
        for side, f, th, thz, width, R in (("x", ih, thx, thzx, n, Rx),
                                           ("h", hh, thh, thzh, m.hidden_size, Rh)):  # fmt: skip
            out["g" + side] = np.array(f.gate.expand(B, R).cpu().numpy(), np.bool_, order="C")
            out["V" + side] = _copy(f.V, dt)
            out["Us" + side + "_t"] = _copy((f.U * f.s).t(), dt)
            out["b" + side] = np.zeros(GH, dt) if f.bias is None else _copy(f.bias, dt)
            out["th" + side] = _per_unit(th, width, dt)
            out["thz" + side] = _per_unit(thz, R, dt)
        return out

    def _adopt(self, m, B: int, dt) -> None:
        """Move the state into owned arrays (from the torch state, or the zero state)."""
        H, GH = m.hidden_size, m.gates * m.hidden_size
        arrays = []
        states = self.state if self.where == "torch" else None
        for layer, ((n, Rx, Rh), g) in enumerate(zip(m._sizes(), self.args, strict=True)):
            shapes = {"x_hat": (B, n), "zx": (B, Rx), "zx_hat": (B, Rx), "yx": (B, GH),
                      "h_hat": (B, H), "zh": (B, Rh), "zh_hat": (B, Rh), "yh": (B, GH),
                      "hidden": (B, H), "cell": (B, H), "mx": (B, GH), "mh": (B, GH),
                      "buf": (GH,)}  # fmt: skip
            a = {k: np.zeros(s, dt) for k, s in shapes.items()}
            a["bits"] = np.zeros(GH, np.int32)
            a["gsx"] = g["gx"].copy()
            a["gsh"] = g["gh"].copy()
            if states is not None:
                st = states[layer]
                for side, es in (("x", st.x), ("h", st.h)):
                    ref = "x_hat" if side == "x" else "h_hat"
                    a[ref][...] = es.x_hat.detach().cpu().numpy()
                    a["z" + side][...] = es.z.detach().cpu().numpy()
                    a["z" + side + "_hat"][...] = es.z_hat.detach().cpu().numpy()
                    a["y" + side][...] = es.y.detach().cpu().numpy()
                    a["gs" + side][...] = es.gate.detach().cpu().numpy()
                a["hidden"][...] = st.hidden.detach().cpu().numpy()
                if hasattr(st, "cell"):
                    a["cell"][...] = st.cell.detach().cpu().numpy()
            arrays.append(a)
        self.arrays, self.state, self.where = arrays, None, "arrays"

    def _pack(self, m, B: int) -> str:
        H, G = m.hidden_size, m.gates
        GH = G * H
        L = m.num_layers
        sub = np.zeros((L, _W), np.int64)
        keep = [sub, self.resync_buf, self.counts]
        for layer, (n, Rx, Rh) in enumerate(m._sizes()):
            a, g, u = self.arrays[layer], self.args[layer], self.units[layer]
            want = {
                "x_hat": (B, n), "zx": (B, Rx), "zx_hat": (B, Rx), "yx": (B, GH),
                "gsx": (B, Rx), "h_hat": (B, H), "zh": (B, Rh), "zh_hat": (B, Rh),
                "yh": (B, GH), "gsh": (B, Rh), "hidden": (B, H), "cell": (B, H),
                "gx": (B, Rx), "Vx": (n, Rx), "Usx_t": (Rx, GH), "bx": (GH,), "thx": (n,),
                "thzx": (Rx,), "gh": (B, Rh), "Vh": (H, Rh), "Ush_t": (Rh, GH), "bh": (GH,),
                "thh": (H,), "thzh": (Rh,), "units_x": (n,), "units_h": (H,), "lat_x": (Rx,),
                "lat_h": (Rh,), "mx": (B, GH), "mh": (B, GH), "buf": (GH,), "bits": (GH,),
            }  # fmt: skip
            f_dt = a["hidden"].dtype
            vals = {"in_size": n, "out_size": H, "G": G, "Rx": Rx, "Rh": Rh}
            for k, shape in want.items():
                arr = a.get(k, g.get(k, u.get(k)))
                dt = np.bool_ if k in ("gsx", "gsh", "gx", "gh") else f_dt
                dt = np.int64 if k in _UNITS else np.int32 if k == "bits" else dt
                if arr.shape != shape or arr.dtype != dt or not arr.flags.c_contiguous:
                    return f"array {k} has {arr.dtype} {arr.shape}, the kernel needs {shape}"
                vals[k] = arr.ctypes.data
                keep.append(arr)
            vals["counts_x"] = self.counts[layer, 0].ctypes.data
            vals["counts_h"] = self.counts[layer, 1].ctypes.data
            sub[layer] = RNN_LAYER.pack(**vals)
        if self.counts.shape != (L, 2, B, 5) or self.resync_buf.shape != (B,):
            return "counters of another batch size"
        n0 = m._sizes()[0][0]
        self.row = RNN.pack(in_size=n0, out_size=H, sig=_SIG, layers=L,
                            lstm=int(m.cell == "lstm"), sub=sub.ctypes.data,
                            resync=self.resync_buf.ctypes.data)  # fmt: skip
        self.desc = np.array([self.row], np.int64)
        self.keep = tuple(keep)
        self.step_fn = chain_kernels(("delta_rnn",))[0]
        return ""

    def kernel_step(self, x: torch.Tensor) -> torch.Tensor:
        """One compiled step on a C-contiguous CPU ``x`` of the row's dtype (caller checked)."""
        out = self.step_fn(x.data_ptr(), x.shape[0], self.desc, *_WITNESS[x.dtype])
        return torch.from_numpy(out)

    # -- the reference path ---------------------------------------------------------------------
    def reference(self, m, x: torch.Tensor) -> torch.Tensor:
        """One torch step (differentiable); the state moves to torch tensors."""
        B = x.shape[0]
        if self.where == "arrays":
            states = self._torch_states(m)
        elif self.where is None:
            states = m.init_state(B, x)
        else:
            states = self.state
        y, new, steps = m._reference(x, states)
        self.arrays, self.state, self.where = None, new, "torch"
        self._forget_row()
        self.resync_buf[...] = 0
        for layer, step in enumerate(steps):
            for side, c in enumerate((step.x_counts, step.h_counts)):
                for j, v in enumerate(c):
                    self.counts[layer, side, :, j] = v.detach().round().long().cpu().numpy()
            u = self.units[layer]
            ex, eh, lx, lh = step.events
            for k, e in (("units_x", ex), ("units_h", eh), ("lat_x", lx), ("lat_h", lh)):
                u[k] += (e.detach() > 0).sum(0).cpu().numpy().astype(np.int64)
        self.basis = self._basis(m)
        return y

    def _torch_states(self, m) -> tuple:
        from braingate.functional.rnn_events import DeltaGRUState, DeltaLSTMState
        from braingate.state import EventState

        out = []
        for a in self.arrays:
            t = {k: torch.from_numpy(v) for k, v in a.items()}
            x = EventState(t["x_hat"], t["zx"], t["zx_hat"], t["yx"], t["gsx"])
            h = EventState(t["h_hat"], t["zh"], t["zh_hat"], t["yh"], t["gsh"])
            if m.cell == "gru":
                out.append(DeltaGRUState(x, h, t["hidden"]))
            else:
                out.append(DeltaLSTMState(x, h, t["hidden"], t["cell"]))
        return tuple(out)

    # -- after a step ---------------------------------------------------------------------------
    def stepped(self, m) -> None:
        """Module-path bookkeeping after one step: counters valid, periodic exact re-sync."""
        self.steps += 1
        self.fresh = False
        self.counted = True
        k = m.resync_every
        if k and self.steps % k == 0:
            self.resync(m)

    def resync(self, m) -> None:
        """Recompute every factor's accumulators exactly from its references (in place for
        owned arrays, so compiled chains keep their addresses); the work goes to the re-sync
        counters of this step."""
        if self.where == "torch":
            from braingate.functional.rnn_events import delta_rnn_resync

            B = self.B
            self.state = tuple(delta_rnn_resync(st, *m._factors(layer, B))
                               for layer, st in enumerate(self.state))  # fmt: skip
            ops = np.zeros(B, np.int64)
            GH = m.gates * m.hidden_size
            for st, (n, _, _) in zip(self.state, m._sizes(), strict=True):
                ops += st.x.gate.sum(-1).cpu().numpy() * (n + GH)
                ops += st.h.gate.sum(-1).cpu().numpy() * (m.hidden_size + GH)
        elif self.where == "arrays":
            ops = np.zeros(self.B, np.int64)
            GH = m.gates * m.hidden_size
            for a, g in zip(self.arrays, self.args, strict=True):
                for side, ref in (("x", "x_hat"), ("h", "h_hat")):
                    gs = a["gs" + side]
                    z, z_hat, y = a["z" + side], a["z" + side + "_hat"], a["y" + side]
                    z[...] = np.where(gs, a[ref] @ g["V" + side], z)
                    y[...] = (z_hat * gs) @ g["Us" + side + "_t"]
                    ops += gs.sum(-1) * (a[ref].shape[1] + GH)
        else:
            return
        self.resync_buf[...] = ops
        self.resync_ops += int(ops.sum())

    # -- hidden state ---------------------------------------------------------------------------
    def hidden(self, m, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(h (L, B, H), c (L, B, H) or None)`` of the current state (copies of owned arrays;
        the torch state's own tensors, graph included)."""
        lstm = m.cell == "lstm"
        if self.where == "arrays":
            h = torch.from_numpy(np.stack([a["hidden"] for a in self.arrays]))
            c = torch.from_numpy(np.stack([a["cell"] for a in self.arrays])) if lstm else None
            return h, c
        if self.where == "torch":
            h = torch.stack([st.hidden for st in self.state])
            c = torch.stack([st.cell for st in self.state]) if lstm else None
            return h, c
        B, L, H = self.B or like.shape[0], m.num_layers, m.hidden_size
        z = like.new_zeros(L, B, H)
        return z, (z.clone() if lstm else None)

    def set_hidden(self, m, h: torch.Tensor, c: torch.Tensor | None) -> None:
        """Set ``h_{t−1}`` (and ``c_{t−1}``) of every layer; the references are kept, so the
        next step sends the jump like any other change."""
        if self.where is None:
            self.state = m.init_state(h.shape[1], h)
            self.where = "torch"
            self._forget_row()
        if self.where == "arrays":
            for layer, a in enumerate(self.arrays):
                a["hidden"][...] = h[layer].detach().cpu().numpy()
                if c is not None:
                    a["cell"][...] = c[layer].detach().cpu().numpy()
        else:
            new = []
            for layer, st in enumerate(self.state):
                st = st._replace(hidden=h[layer])
                new.append(st._replace(cell=c[layer]) if c is not None else st)
            self.state = tuple(new)

    # -- compiled chains ------------------------------------------------------------------------
    def lower(self, m, B: int, dtype, in_shape: tuple):
        """The module as a ``delta_rnn`` :class:`~braingate.runtime.Row` for batch ``B``, or why
        it cannot be lowered."""
        from braingate.runtime.ops import Row

        p = m._factor_tensors()[0]
        if m.execution != "event":
            return f"execution={m.execution!r}, not 'event'"
        if p.dtype is not dtype or p.device.type != "cpu":
            return f"its factors are {p.dtype} on {p.device}; the stream is {dtype} on cpu"
        if tuple(in_shape) != (m.input_size,):
            return f"it takes ({m.input_size},) per sample, receives {tuple(in_shape)}"
        if m._gate_batch() not in (None, B):
            return "its per-sample gate does not match the batch"
        if self.B is not None and self.B != B and not self.fresh:
            return "its stream has another batch size (reset it first)"
        self.prepare(m, B)
        if not self.ready(m, B, dtype):
            reason = self.build(m, B, dtype)
            if reason:
                return reason
        self.counted = True
        watch = (
            (self.__dict__, "desc", self.desc),  # replaced with the arrays, args and counters
            (m.__dict__, "_execution", m._execution),
            (m.__dict__, "_runner", self),
            (m.__dict__, "resync_every", m.resync_every),
        )
        return Row("delta_rnn", list(self.row), self.keep, (m.input_size,), (m.hidden_size,),
                   watch, tuple(m._tracked()), ((m.__dict__, "_epoch"),), (),
                   _Stepper(m, self))  # fmt: skip
