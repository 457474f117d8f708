"""Compiled event step for CPU (numba). The torch function in ``event_step.py`` is the reference.

At batch 1 PyTorch's per-op dispatch costs more than the arithmetic of a sparse step, so the whole
step is one compiled loop. Factors are read row-wise: ``V`` is ``(n, R)`` (one contiguous row per
input coordinate) and ``Us_t = (U·diag(s))ᵀ`` is ``(R, m)`` (one contiguous row per rank unit),
the layout REFERENCES §A measured 5–20× faster than gathering columns.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "AVAILABLE",
    "NONFINITE",
    "count_over_np",
    "event_step_np",
    "lif_step_np",
    "synops_total",
    "zero_stream",
]

AVAILABLE = False
if os.environ.get("BRAINGATE_DISABLE_NUMBA", "") not in ("1", "true"):
    from braingate._numba_cache import clear_stale_caches

    clear_stale_caches()  # before any cached kernel is loaded
    try:
        from numba import njit

        AVAILABLE = True
    except ImportError:  # pragma: no cover - numba is a declared dependency
        AVAILABLE = False


#: The error every event path raises for NaN / ±inf input (the step is refused, state unchanged).
NONFINITE = (
    "non-finite input (NaN or inf) to an event layer: the step was refused and the layer's state "
    "is unchanged; clean the stream first (e.g. torch.nan_to_num(x))"
)


def _event_step_py(x, x_hat, z, z_hat, y, gstate, gate, V, Us_t, bias, th, thz, out, counts,
                   in_units, lat_units):  # fmt: skip
    """Arguments: numpy views of the state (updated in place); ``out`` receives ``y + bias``;
    ``counts[b]`` receives the :data:`braingate.state.COUNT_FIELDS` of sample ``b``;
    ``in_units`` / ``lat_units`` accumulate events per input coordinate / rank unit. (No return
    value: returning one measurably slows the compiled loop, ~0.5 µs at n = 1024.)"""
    B, n = x.shape
    R = V.shape[1]
    m = Us_t.shape[1]
    scratch = np.empty(R + B, np.int64)  # one allocation: active units, events per sample
    act, nes = scratch[:R], scratch[R:]
    sent = np.empty((B, n), np.uint8)
    # pass 1, nothing written yet: a branch-free (vectorisable) threshold test, and non-finite
    # input refused before any state changes (x - x is NaN for NaN and ±inf)
    poison = 0
    for b in range(B):
        ne = 0
        for i in range(n):
            v = x[b, i]
            poison += (v - v) != 0  # an integer sum: the loop stays vectorisable
            hit = abs(v - x_hat[b, i]) > th[i]
            sent[b, i] = hit
            ne += hit
        nes[b] = ne
    if poison:
        raise ValueError(NONFINITE)
    for b in range(B):
        gate_ops = 0
        na = 0
        for j in range(R):
            g = gate[b, j]
            if gstate[b, j] and not g:
                c = z_hat[b, j]
                for k in range(m):
                    y[b, k] -= c * Us_t[j, k]
                gate_ops += m
            elif g and not gstate[b, j]:
                acc = 0.0
                for i in range(n):
                    acc += x_hat[b, i] * V[i, j]
                z[b, j] = acc
                z_hat[b, j] = acc
                for k in range(m):
                    y[b, k] += acc * Us_t[j, k]
                gate_ops += n + m
            gstate[b, j] = g
            if g:
                act[na] = j
                na += 1
        # pass 2: only the events
        ne = nes[b]
        i = 0
        found = 0
        while found < ne:
            if sent[b, i]:
                found += 1
                d = x[b, i] - x_hat[b, i]
                x_hat[b, i] = x[b, i]
                in_units[i] += 1
                if na == R:
                    for j in range(R):
                        z[b, j] += d * V[i, j]
                else:
                    for a in range(na):
                        z[b, act[a]] += d * V[i, act[a]]
            i += 1
        nl = 0
        for a in range(na):
            j = act[a]
            d = z[b, j] - z_hat[b, j]
            if abs(d) > thz[j]:
                z_hat[b, j] = z[b, j]
                nl += 1
                lat_units[j] += 1
                for k in range(m):
                    y[b, k] += d * Us_t[j, k]
        for k in range(m):
            out[b, k] = y[b, k] + bias[k]
        counts[b, 0] = ne
        counts[b, 1] = nl
        counts[b, 2] = ne * na + nl * m
        counts[b, 3] = gate_ops
        counts[b, 4] = na


event_step_np = njit(cache=True, nogil=True)(_event_step_py) if AVAILABLE else _event_step_py


def _zero_stream_py(x_hat, z, z_hat, y, gstate, gate, in_units, lat_units, lat_units_dense):
    """A layer's reset in one call: state and per-unit counters to zero, the gate state to
    ``gate`` (``(R,)`` or ``(B, R)``; None: all on)."""
    x_hat[:] = 0
    z[:] = 0
    z_hat[:] = 0
    y[:] = 0
    in_units[:] = 0
    lat_units[:] = 0
    lat_units_dense[:] = 0
    if gate is None:
        gstate[:] = True
    else:
        for b in range(gstate.shape[0]):
            gstate[b] = gate[b] if gate.ndim == 2 else gate


zero_stream = njit(cache=True, nogil=True)(_zero_stream_py) if AVAILABLE else _zero_stream_py


def _synops_total_py(counts):
    """``counts[:, 2].sum()`` without numpy's per-call overhead (auto mode needs it every step)."""
    total = 0
    for b in range(counts.shape[0]):
        total += counts[b, 2]
    return total


synops_total = njit(cache=True, nogil=True)(_synops_total_py) if AVAILABLE else _synops_total_py


def _count_over_py(a, b, th):
    """Number of entries with ``|a − b| > th`` (``th`` per column), summed over rows."""
    rows, cols = a.shape
    total = 0
    for r in range(rows):
        for c in range(cols):
            if abs(a[r, c] - b[r, c]) > th[c]:
                total += 1
    return total


count_over_np = njit(cache=True, nogil=True)(_count_over_py) if AVAILABLE else _count_over_py


def _lif_step_py(x, mem, beta, thr, zero_reset, out):
    """In-place LIF step (see :func:`braingate.functional.lif.lif_step`); spikes go to ``out``."""
    rows, cols = x.shape
    for r in range(rows):
        for c in range(cols):
            u_prev = mem[r, c]
            fired = u_prev > thr[c]
            if fired and zero_reset:  # cleared before this step's input (snntorch, NIR)
                u = x[r, c]
            else:
                u = beta[c] * u_prev + x[r, c]
                if fired:
                    u = u - thr[c]
            mem[r, c] = u
            out[r, c] = 1.0 if u > thr[c] else 0.0


lif_step_np = njit(cache=True, nogil=True)(_lif_step_py) if AVAILABLE else _lif_step_py
