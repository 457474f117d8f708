"""The compiled event step of a gated low-rank linear layer as a chain op (DESIGN §2).

The arithmetic is :func:`braingate.functional._kernels.event_step_np`; this file only declares
the descriptor row (:data:`LINEAR`) and views its arrays.
"""

from __future__ import annotations

import numpy as np

from braingate.functional import _kernels
from braingate.runtime.layout import Layout
from braingate.runtime.ops import OPS, Op
from braingate.runtime.ptr import AVAILABLE, view

__all__ = ["LINEAR"]

#: Descriptor row of the linear event op: sizes, then the addresses of the state (``x_hat``,
#: ``z``, ``z_hat``, ``y``, ``gstate``), the step inputs (``gate``, ``V`` (n, R), ``Us_t`` (R, m),
#: ``bias``, ``th``, ``thz``) and the counters (``counts`` (B, 5), events per input / rank unit).
LINEAR = Layout(
    "event_linear",
    "R x_hat z z_hat y gstate gate V Us_t bias th thz counts in_units lat_units lat_units_dense",
)

if AVAILABLE:
    from numba import njit

    C = LINEAR.at

    @njit(nogil=True, cache=True)
    def _step(h, row, f, g):
        B, n, m, R = h.shape[0], row[C.in_size], row[C.out_size], row[C.R]
        out = np.empty((B, m), f.dtype)
        _kernels.event_step_np(
            h,
            view(row[C.x_hat], f, (B, n)),
            view(row[C.z], f, (B, R)),
            view(row[C.z_hat], f, (B, R)),
            view(row[C.y], f, (B, m)),
            view(row[C.gstate], g, (B, R)),
            view(row[C.gate], g, (B, R)),
            view(row[C.V], f, (n, R)),
            view(row[C.Us_t], f, (R, m)),
            view(row[C.bias], f, (m,)),
            view(row[C.th], f, (n,)),
            view(row[C.thz], f, (R,)),
            out,
            view(row[C.counts], row, (B, 5)),
            view(row[C.in_units], row, (n,)),
            view(row[C.lat_units], row, (R,)),
        )
        return out

    @njit(nogil=True, cache=True)
    def _reset(B, row, f, g):
        n, m, R = row[C.in_size], row[C.out_size], row[C.R]
        _kernels.zero_stream(
            view(row[C.x_hat], f, (B, n)),
            view(row[C.z], f, (B, R)),
            view(row[C.z_hat], f, (B, R)),
            view(row[C.y], f, (B, m)),
            view(row[C.gstate], g, (B, R)),
            view(row[C.gate], g, (B, R)),
            view(row[C.in_units], row, (n,)),
            view(row[C.lat_units], row, (R,)),
            view(row[C.lat_units_dense], row, (R,)),
        )

    OPS.add("event_linear", Op("event_linear", LINEAR, _step, _reset))
