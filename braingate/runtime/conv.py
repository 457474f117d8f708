"""Compiled convolution and pooling ops of the event runtime (DESIGN §2b).

``event_conv``: the event step of a gated low-rank conv (1-D convs run as 2-D with height 1).
Per sample, in four passes:

1. *Input test*: ``|x − x̂| > θ_c`` for every element into a byte mask (a vectorised loop; each
   channel's mask padded to whole 8-byte words), the events counted.
2. *Scatter*: the mask's nonzero words are scanned with ``cttz``, so only the events are visited,
   in channel, row, column order. Event ``(c, i, j)`` adds ``Δ·V[(c, taps), :]`` into ``z`` at
   every output position whose receptive field holds ``(i, j)``. With stride and dilation 1
   along the width, the ``k_w`` taps of one kernel row reach ``k_w`` adjacent positions, whose
   ``z`` rows are contiguous (channel-last) and whose ``V`` rows are too (``V`` stores each
   kernel row's taps reversed): one loop of ``k_w·R_p`` per kernel row. Output rows reached are
   flagged.
3. *Latent test* in the flagged rows (every row after anything that can move ``z − ẑ``
   elsewhere: a re-sync or new thresholds, flagged in ``dirty``): ``|z − ẑ| > θ_z`` over the
   row's ``(W', R_p)`` block into a byte mask (vectorised), then each position's words of it:
   its events, found by ``cttz``, accumulate ``Δz_r·(U s)_r`` into one change of its output
   column, added to ``y`` through a strided view.
4. *Output*: a copy of ``y`` (it holds the bias).

Layouts, chosen for contiguous inner loops: ``x̂`` ``(B, C, H, W)`` like the input, ``z`` / ``ẑ``
channel-last ``(B, H'W', R_p)``, ``y`` ``(B, C_out, H'W')`` like the output. The latent and
output channels are padded with zeros to ``R_p`` / ``C_op``, multiples of :data:`LANES`, so the
inner loops run over whole SIMD vectors (a loop of 6 or 12 lanes ran 1.5–2× slower than one of
8 or 16 here); padded channels never hold events (their ``θ_z`` is +inf). Inner loops start at
0 over slices: numba's index wrap-around checks otherwise keep LLVM from vectorising them. The
tap tables and scratch are arrays the runner owns (:func:`tap_tables`, :func:`scratch_sizes`):
no allocation per step but the output. The arithmetic equals
:func:`braingate.functional.conv_events.conv_event_step` (tested against it), and the counts are
the §2b ones (``reached`` = Σ over input events of the positions each reaches).

Granularity (``pixel`` column): 0 sends elements (``|Δ_c| > θ_c``); 1 sends whole pixels, all
channels together, when any channel crosses its threshold (DeltaCNN's rule). Either way the
residual of every element stays ``≤ θ_c``.

Measured on the saccade-digits CNN (``benchmarks/conv_event_vs_dense.py``, one thread): per
frame, 16×28×28 output ~7 µs and 32×14×14 ~9 µs, against ~19 and ~23 µs for the previous
kernel (element loops of length ``R``, per-event division, allocation per step). On dense
streams (camera motion, a third or more of the inputs changing every frame) the scatter and the
strided output updates cost far more per MAC than oneDNN's dense conv: the event path is slower
there (see the benchmark's camera table).

``pool`` (MaxPool / AvgPool, 1-D and 2-D): pooling of the values the chain passes (accumulated
state, not deltas: the max of changes is not the change of the max), so it is exact by
construction. Pooling is
cheap next to a convolution (a 2×2 max-pool over 16×28×28 takes ~2 µs here); a cache of the
last input that pooled only changed rows was measured slower than pooling everything.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from braingate.functional._kernels import NONFINITE
from braingate.runtime.layout import Layout
from braingate.runtime.ops import OPS, Op, Row, register_fuser
from braingate.runtime.ptr import AVAILABLE, view

__all__ = ["CONV", "COUNT_COLUMNS", "POOL", "pool_geometry"]

#: Latent and output channels are padded to multiples of this in the kernel's arrays (with
#: zeros), so the inner loops run over whole SIMD vectors of a compile-time width.
LANES = 8

#: Descriptor row of the conv event op: geometry (``Rp``, ``Cop``: ``R``, ``C_out`` padded to
#: :data:`LANES`), granularity, then the addresses of the state (``x_hat``, ``z``, ``z_hat``
#: ``(B, H'W'·Rp)``, ``y``, ``gstate``, ``dirty``), the step inputs (``gate``, ``V``
#: ``(C·kh·kw, Rp)``, ``Us_t`` ``(Rp, Cop)``, ``bias``, ``th`` ``(C,)``, ``thz`` ``(R,)``) and
#: the counters (``counts`` ``(B, 6)``, events per input / latent channel), and the op's
#: tables and scratch (:func:`scratch_sizes`): ``taps`` (int64, the tap tables of
#: :func:`tap_tables` then ``R`` slots), ``scratch_u8`` (zeros, masks) and ``scratch_f``.
CONV = Layout(
    "event_conv",
    "C H W Co Ho Wo R Rp Cop kh kw sh sw ph pw dh dw pixel x_hat z z_hat y gstate dirty gate V "
    "Us_t bias th thz counts in_units lat_units taps scratch_u8 scratch_f",
)
#: Columns of the conv op's per-sample ``counts``.
COUNT_COLUMNS = ("input_events", "latent_events", "synops", "gate_ops", "active_rank", "reached")

#: Descriptor row of the pooling op (``mode`` 0: max, 1: average counting padding, 2: average
#: over the valid window only).
POOL = Layout("pool", "C H W Ho Wo kh kw sh sw ph pw dh dw mode")

if AVAILABLE:
    from llvmlite import ir
    from numba import njit, types
    from numba.extending import intrinsic

    _ONE = np.uint64(1)

    @intrinsic
    def cttz(typingctx, word):
        """Trailing zero bits of a nonzero uint64 (LLVM ``cttz``: one instruction)."""

        def codegen(context, builder, sig, args):
            return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

        return types.uint64(types.uint64), codegen

    @njit(nogil=True, cache=True)
    def _taps(n, o_n, k, s, p, d):
        """Per input index ``i < n``: the taps ``k`` and outputs ``o < o_n`` with
        ``o·s − p + k·d = i`` (``cnt[i]`` of them), so the hot loop does no division."""
        cnt = np.zeros(n, np.int64)
        tk = np.empty((n, k), np.int64)
        to = np.empty((n, k), np.int64)
        for o in range(o_n):
            for kk in range(k):
                i = o * s - p + kk * d
                if 0 <= i < n:
                    tk[i, cnt[i]] = kk
                    to[i, cnt[i]] = o
                    cnt[i] += 1
        return cnt, tk, to

    @njit(nogil=True, cache=True)
    def scratch_sizes(C, H, W, Ho, Wo, R, Rp, Cop, kh, kw):
        """Lengths of the op's ``taps`` (int64), ``scratch_u8`` and ``scratch_f`` arrays."""
        HW8 = (H * W + 7) // 8 * 8
        n_int = H * (1 + 2 * kh) + W * (1 + 2 * kw) + H * W + R
        return n_int, C * HW8 + Wo * Rp + Ho + H * W, Rp + Wo * Rp + Cop

    def tap_tables(H, W, Ho, Wo, R, kh, kw, sh, sw, ph, pw, dh, dw) -> np.ndarray:
        """The ``taps`` array: per input row and column, its tap count, taps and outputs
        (:func:`_taps`), the row of every input position, then ``R`` slots of scratch."""
        parts = []
        for n, o_n, k, s, p, d in ((H, Ho, kh, sh, ph, dh), (W, Wo, kw, sw, pw, dw)):
            cnt, tk, to = _taps(n, o_n, k, s, p, d)
            parts += [cnt, tk.ravel(), to.ravel()]
        row_of = np.repeat(np.arange(H, dtype=np.int64), W)  # input position -> its row
        return np.concatenate([*parts, row_of, np.zeros(R, np.int64)])

    @njit(nogil=True, cache=True)
    def conv_event_np(h, x_hat, z, z_hat, y, gstate, dirty, gate, V, Us_t, bias, th, thz, out,
                      counts, in_units, lat_units, taps, u8, fl, C, H, W, Co, Ho, Wo, R, Rp, Cop,
                      kh, kw, sh, sw, ph, pw, dh, dw, pixel):  # fmt: skip
        """One step for every sample; arrays are flat per sample (see the module docstring)."""
        B = h.shape[0]
        P = Ho * Wo
        HW = H * W
        N = C * HW
        # non-finite input is refused before anything is written (x - x is NaN for NaN, ±inf)
        bad = 0
        for b in range(B):
            hb = h[b]
            for q in range(N):
                v = hb[q]
                bad |= (v - v) != 0  # an integer reduction: vectorised
        if bad:
            raise ValueError(NONFINITE)
        # the runtime-owned tables and scratch (no allocation per step; see scratch_sizes)
        rn, a0 = taps[:H], H
        rk, a0 = taps[a0 : a0 + H * kh].reshape(H, kh), a0 + H * kh
        ro, a0 = taps[a0 : a0 + H * kh].reshape(H, kh), a0 + H * kh
        cn, a0 = taps[a0 : a0 + W], a0 + W
        ck, a0 = taps[a0 : a0 + W * kw].reshape(W, kw), a0 + W * kw
        co, a0 = taps[a0 : a0 + W * kw].reshape(W, kw), a0 + W * kw
        row_of, a0 = taps[a0 : a0 + H * W], a0 + H * W
        act = taps[a0 : a0 + R]
        HW8 = (HW + 7) // 8 * 8
        row_block = sw == 1 and dw == 1
        KR = kw * Rp
        WR = Wo * Rp
        thz_e, thz_row, dy = fl[:Rp], fl[Rp : Rp + WR], fl[Rp + WR : Rp + WR + Cop]
        sent, hitz = u8[: C * HW8], u8[C * HW8 : C * HW8 + WR]  # sent: zero channel padding
        rows, pm = u8[C * HW8 + WR : C * HW8 + WR + Ho], u8[C * HW8 + WR + Ho :]
        words, zwords = sent.view(np.uint64), hitz.view(np.uint64)
        RW = Rp // 8  # 8-byte words of one position's latent hit mask
        for b in range(B):
            hb, xb, zb, zhb, yb = h[b], x_hat[b], z[b], z_hat[b], y[b]
            gate_ops = 0
            na = 0
            for r in range(R):  # gate changes are events too
                g = gate[b, r]
                if gstate[b, r] and not g:
                    for p in range(P):
                        c0 = zhb[p * Rp + r]
                        if c0 != 0:
                            for o in range(Co):
                                yb[o * P + p] -= c0 * Us_t[r * Cop + o]
                    gate_ops += Co * P
                elif g and not gstate[b, r]:
                    for io in range(Ho):
                        for jo in range(Wo):
                            s0 = 0.0
                            for c in range(C):
                                for ki in range(kh):
                                    i = io * sh - ph + ki * dh
                                    if i < 0 or i >= H:
                                        continue
                                    for kj in range(kw):
                                        j = jo * sw - pw + kj * dw
                                        if 0 <= j < W:
                                            s0 += (
                                                xb[c * HW + i * W + j]
                                                * V[((c * kh + ki) * kw + kw - 1 - kj) * Rp + r]
                                            )
                            p = io * Wo + jo
                            zb[p * Rp + r] = s0
                            zhb[p * Rp + r] = s0
                            for o in range(Co):
                                yb[o * P + p] += s0 * Us_t[r * Cop + o]
                    gate_ops += (C * kh * kw + Co) * P
                gstate[b, r] = g
                if g:
                    act[na] = r
                    na += 1
            for r in range(Rp):  # θ_z per latent channel, +inf where the gate is off (padding too)
                thz_e[r] = np.inf
            for u in range(na):
                thz_e[act[u]] = thz[act[u]]
            for jo in range(Wo):
                tr = thz_row[jo * Rp : jo * Rp + Rp]
                for r in range(Rp):
                    tr[r] = thz_e[r]
            full_gate = na == R
            # input events: a vectorised threshold test into a byte mask (channels padded to
            # whole 8-byte words), then a scan of its words that visits only the events, in
            # channel, row, column order
            ne = 0
            if pixel:  # a pixel is sent with all its channels when any crosses its threshold
                pm[:] = 0
                for c in range(C):
                    tc = th[c]
                    hc, xc = hb[c * HW : c * HW + HW], xb[c * HW : c * HW + HW]
                    for q in range(HW):
                        pm[q] |= abs(hc[q] - xc[q]) > tc
                for q in range(HW):
                    ne += pm[q]
                for c in range(C):
                    sent[c * HW8 : c * HW8 + HW] = pm
                ne *= C
            else:
                for c in range(C):  # loops from 0 over slices: LLVM vectorises only those
                    tc = th[c]
                    hc, xc = hb[c * HW : c * HW + HW], xb[c * HW : c * HW + HW]
                    sc = sent[c * HW8 : c * HW8 + HW]
                    for q in range(HW):
                        hit = abs(hc[q] - xc[q]) > tc
                        sc[q] = hit
                        ne += hit
            reached = 0
            for c in range(C):
                if not ne:
                    break
                hc, xc = hb[c * HW : c * HW + HW], xb[c * HW : c * HW + HW]
                wc = words[c * (HW8 // 8) : (c + 1) * (HW8 // 8)]
                nin = 0
                for w in range(HW8 // 8):
                    word = wc[w]
                    while word:
                        q = w * 8 + (cttz(word) >> 3)
                        word &= word - _ONE
                        i = row_of[q]
                        j = q - i * W
                        d = hc[q] - xc[q]
                        xc[q] = hc[q]
                        nin += 1
                        nj = cn[j]
                        reached += rn[i] * nj
                        if row_block and nj == kw and full_gate:  # kw adjacent outputs
                            o_lo = co[j, 0]
                            for a in range(rn[i]):
                                p0 = ro[i, a] * Wo + o_lo
                                vo = (c * kh + rk[i, a]) * KR
                                zp, vv = zb[p0 * Rp : p0 * Rp + KR], V[vo : vo + KR]
                                for r in range(KR):  # V's taps reversed within a row
                                    zp[r] += d * vv[r]
                                rows[ro[i, a]] = 1
                            continue
                        for a in range(rn[i]):
                            prow = ro[i, a] * Wo
                            rowk = (c * kh + rk[i, a]) * kw + kw - 1
                            for e in range(nj):
                                p = prow + co[j, e]
                                vo = (rowk - ck[j, e]) * Rp
                                zp, vv = zb[p * Rp : p * Rp + Rp], V[vo : vo + Rp]
                                if full_gate:
                                    for r in range(Rp):  # zero-padded: whole vectors
                                        zp[r] += d * vv[r]
                                else:
                                    for u in range(na):
                                        r = act[u]
                                        zp[r] += d * vv[r]
                            rows[ro[i, a]] = 1
                in_units[c] += nin
            # latent events in the output rows reached (every row after a re-sync / new θ_z): a
            # vectorised test of the row's (W', Rp) block into a byte mask, then each position's
            # 8-byte words of it: its events accumulate into one change of its output column
            full = dirty[b, P]
            nl = 0
            for io in range(Ho):
                if not (full or rows[io]):
                    continue
                rows[io] = 0
                zr, zhr = zb[io * WR : io * WR + WR], zhb[io * WR : io * WR + WR]
                hits = 0
                for k in range(WR):
                    hit = abs(zr[k] - zhr[k]) > thz_row[k]
                    hitz[k] = hit
                    hits += hit
                if not hits:
                    continue
                nl += hits
                for jo in range(Wo):
                    any_hit = zwords[jo * RW]
                    for u in range(1, RW):
                        any_hit |= zwords[jo * RW + u]
                    if not any_hit:
                        continue
                    dy[:] = 0.0
                    for u in range(RW):
                        word = zwords[jo * RW + u]
                        while word:
                            r = u * 8 + (cttz(word) >> 3)
                            word &= word - _ONE
                            k = jo * Rp + r
                            dd = zr[k] - zhr[k]
                            zhr[k] = zr[k]
                            lat_units[r] += 1
                            ur = Us_t[r * Cop : r * Cop + Cop]
                            for o in range(Cop):
                                dy[o] += dd * ur[o]
                    ycol = yb[io * Wo + jo :: P]  # the output column (strided view)
                    for o in range(Co):
                        ycol[o] += dy[o]
            dirty[b, P] = False
            ob = out[b]
            for q in range(Co * P):  # y holds the bias: the output is a copy
                ob[q] = yb[q]
            counts[b, 0] = ne
            counts[b, 1] = nl
            counts[b, 2] = reached * na + nl * Co
            counts[b, 3] = gate_ops
            counts[b, 4] = na
            counts[b, 5] = reached

    K = CONV.at

    @njit(nogil=True, cache=True)
    def _conv_step(h, row, f, g):
        B = h.shape[0]
        C, H, W, Co, Ho, Wo, R = (
            row[K.C],
            row[K.H],
            row[K.W],
            row[K.Co],
            row[K.Ho],
            row[K.Wo],
            row[K.R],
        )
        Rp, Cop, kh, kw = row[K.Rp], row[K.Cop], row[K.kh], row[K.kw]
        P = Ho * Wo
        n_int, n_u8, n_f = scratch_sizes(C, H, W, Ho, Wo, R, Rp, Cop, kh, kw)
        out = np.empty((B, Co * P), f.dtype)
        conv_event_np(
            h, view(row[K.x_hat], f, (B, C * H * W)), view(row[K.z], f, (B, P * Rp)),
            view(row[K.z_hat], f, (B, P * Rp)), view(row[K.y], f, (B, Co * P)),
            view(row[K.gstate], g, (B, R)), view(row[K.dirty], g, (B, P + 1)),
            view(row[K.gate], g, (B, R)), view(row[K.V], f, (C * kh * kw * Rp,)),
            view(row[K.Us_t], f, (Rp * Cop,)), view(row[K.bias], f, (Co,)),
            view(row[K.th], f, (C,)), view(row[K.thz], f, (R,)), out,
            view(row[K.counts], row, (B, 6)), view(row[K.in_units], row, (C,)),
            view(row[K.lat_units], row, (R,)), view(row[K.taps], row, (n_int,)),
            view(row[K.scratch_u8], g, (n_u8,)).view(np.uint8), view(row[K.scratch_f], f, (n_f,)),
            C, H, W, Co, Ho, Wo, R, Rp, Cop, kh, kw,
            row[K.sh], row[K.sw], row[K.ph], row[K.pw], row[K.dh], row[K.dw],
            row[K.pixel] == 1,
        )  # fmt: skip
        return out

    @njit(nogil=True, cache=True)
    def _conv_reset(B, row, f, g):
        C, H, W, Co, R = row[K.C], row[K.H], row[K.W], row[K.Co], row[K.R]
        P = row[K.Ho] * row[K.Wo]
        view(row[K.x_hat], f, (B * C * H * W,))[:] = 0
        view(row[K.z], f, (B * P * row[K.Rp],))[:] = 0
        view(row[K.z_hat], f, (B * P * row[K.Rp],))[:] = 0
        y = view(row[K.y], f, (B, Co, P))
        bias = view(row[K.bias], f, (Co,))
        for b in range(B):
            for o in range(Co):
                y[b, o] = bias[o]
        view(row[K.gstate], g, (B * R,))[:] = view(row[K.gate], g, (B * R,))
        view(row[K.dirty], g, (B * (P + 1),))[:] = False
        view(row[K.counts], row, (B * 6,))[:] = 0
        view(row[K.in_units], row, (C,))[:] = 0
        view(row[K.lat_units], row, (R,))[:] = 0

    Q = POOL.at

    @njit(nogil=True, cache=True)
    def _windows(o_n, s, p, k, d, n, pad_n):
        """Per output ``o``: first valid tap, end of valid taps, window start, and the
        count_include_pad extent (window clipped to the padded input)."""
        w = np.empty((o_n, 4), np.int64)
        for o in range(o_n):
            start = o * s - p
            k0 = 0
            while k0 < k and start + k0 * d < 0:
                k0 += 1
            k1 = k
            while k1 > k0 and start + (k1 - 1) * d >= n:
                k1 -= 1
            w[o, 0], w[o, 1], w[o, 2] = k0, k1, start
            w[o, 3] = min(start + k, n + pad_n) - start
        return w

    @njit(nogil=True, cache=True)
    def _pool2(h, out, C, H, W, Ho, Wo, mode):
        """2×2 windows, stride 2, no padding (the common case), on 1-D row slices."""
        for b in range(h.shape[0]):
            hb, ob = h[b], out[b]
            for c in range(C):
                for io in range(Ho):
                    s0 = c * H * W + 2 * io * W
                    r0, r1 = hb[s0 : s0 + W], hb[s0 + W : s0 + 2 * W]
                    o = ob[(c * Ho + io) * Wo : (c * Ho + io + 1) * Wo]
                    for jo in range(Wo):
                        a, e = r0[2 * jo], r0[2 * jo + 1]
                        f2, g2 = r1[2 * jo], r1[2 * jo + 1]
                        if mode == 0:
                            m1 = a if (a > e or a != a) else e
                            m2 = f2 if (f2 > g2 or f2 != f2) else g2
                            o[jo] = m1 if (m1 > m2 or m1 != m1) else m2
                        else:
                            o[jo] = (a + e + f2 + g2) * 0.25

    @njit(nogil=True, cache=True)
    def _pool(h, row, f, g):
        B = h.shape[0]
        C, H, W, Ho, Wo = row[Q.C], row[Q.H], row[Q.W], row[Q.Ho], row[Q.Wo]
        kh, kw, sh, sw, ph, pw = row[Q.kh], row[Q.kw], row[Q.sh], row[Q.sw], row[Q.ph], row[Q.pw]
        dh, dw, mode = row[Q.dh], row[Q.dw], row[Q.mode]
        out = np.empty((B, C * Ho * Wo), f.dtype)
        if (
            kh == 2
            and kw == 2
            and sh == 2
            and sw == 2
            and ph == 0
            and pw == 0
            and dh == 1
            and dw == 1
        ):
            _pool2(h, out, C, H, W, Ho, Wo, mode)
            return out
        wr = _windows(Ho, sh, ph, kh, dh, H, ph)
        wc = _windows(Wo, sw, pw, kw, dw, W, pw)
        for b in range(B):
            hb, ob = h[b], out[b]
            for c in range(C):
                src = c * H * W
                for io in range(Ho):
                    a0, a1, i0 = wr[io, 0], wr[io, 1], wr[io, 2]
                    o = ob[(c * Ho + io) * Wo : (c * Ho + io + 1) * Wo]
                    for jo in range(Wo):
                        o[jo] = -np.inf if mode == 0 else 0
                    for ki in range(a0, a1):
                        r = hb[src + (i0 + ki * dh) * W : src + (i0 + ki * dh + 1) * W]
                        for jo in range(Wo):
                            acc = o[jo]
                            start = wc[jo, 2]
                            for kj in range(wc[jo, 0], wc[jo, 1]):
                                v = r[start + kj * dw]
                                if mode != 0:
                                    acc += v
                                elif v > acc or v != v:  # NaN propagates, as in torch
                                    acc = v
                            o[jo] = acc
                    for jo in range(Wo):
                        if mode == 1:
                            o[jo] /= wr[io, 3] * wc[jo, 3]
                        elif mode == 2:
                            o[jo] /= (a1 - a0) * (wc[jo, 1] - wc[jo, 0])
        return out

    OPS.add("event_conv", Op("event_conv", CONV, _conv_step, _conv_reset))
    OPS.add("pool", Op("pool", POOL, _pool))


def _pair(v, dims: int, height: int = 1) -> tuple[int, ...]:
    """``v`` per spatial dim, as the 2-D op sees it (1-D pools: ``height`` in front)."""
    t = tuple(v) if isinstance(v, (tuple, list)) else (v,) * dims
    return t if dims == 2 else (height, *t)


def pool_geometry(module: nn.Module, in_shape: tuple) -> tuple[dict, tuple] | str:
    """The pool row's values and output shape for ``module`` on per-sample ``in_shape``, or why
    it cannot be lowered."""
    dims = 1 if isinstance(module, (nn.MaxPool1d, nn.AvgPool1d)) else 2
    if len(in_shape) != dims + 1:
        return f"{type(module).__name__} receives per-sample shape {in_shape}, not (C, *spatial)"
    C, *sp = in_shape
    H, W = (1, sp[0]) if dims == 1 else sp
    k = _pair(module.kernel_size, dims)
    s = _pair(module.stride if module.stride is not None else module.kernel_size, dims)
    p = _pair(module.padding, dims, 0)
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
        if module.return_indices:
            return "a MaxPool with return_indices=True"
        d, mode = _pair(module.dilation, dims), 0
    else:
        if module.divisor_override if dims == 2 else False:
            return "an AvgPool2d with divisor_override"
        d, mode = (1, 1), 1 if module.count_include_pad else 2
    if module.ceil_mode:
        return f"a {type(module).__name__} with ceil_mode=True (use ceil_mode=False)"
    Ho = (H + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    Wo = (W + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    if Ho < 1 or Wo < 1:
        return f"{type(module).__name__} gives an empty output on input {in_shape}"
    values = dict(C=C, H=H, W=W, Ho=Ho, Wo=Wo, kh=k[0], kw=k[1], sh=s[0], sw=s[1], ph=p[0],
                  pw=p[1], dh=d[0], dw=d[1], mode=mode)  # fmt: skip
    out_shape = (C, Wo) if dims == 1 else (C, Ho, Wo)
    return values, out_shape


def _fuse_pool(module, B, dtype, in_shape):
    got = pool_geometry(module, tuple(in_shape))
    if isinstance(got, str):
        return got
    values, out_shape = got
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
    return Row("pool", POOL.pack(in_size=n_in, out_size=n_out, **values), (), tuple(in_shape),
               out_shape)  # fmt: skip


for _t in (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d):
    register_fuser(_t)(_fuse_pool)
