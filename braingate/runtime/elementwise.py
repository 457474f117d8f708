"""Elementwise chain ops: ReLU and the LIF neuron; Identity, eval-mode Dropout and Flatten lower
to no kernel at all (a flat activation is already flattened)."""

from __future__ import annotations

import numpy as np
from torch import nn

from braingate.runtime.layout import Layout
from braingate.runtime.ops import OPS, Op, Row, register_fuser
from braingate.runtime.ptr import AVAILABLE, view

__all__ = ["LIF_LAYOUT", "RELU"]

RELU = Layout("relu", "")
#: LIF: membrane (B, size) and per-neuron decay and threshold (float32), reset mode (0: subtract,
#: 1: to zero).
LIF_LAYOUT = Layout("lif", "mem beta thr zero_reset")

if AVAILABLE:
    from numba import njit

    from braingate.functional._kernels import lif_step_np

    @njit(nogil=True, cache=True)
    def _relu(h, row, f, g):
        B, n = h.shape
        for r in range(B):
            for c in range(n):
                if h[r, c] < 0:
                    h[r, c] = 0
        return h

    L = LIF_LAYOUT.at

    @njit(nogil=True, cache=True)
    def _lif(h, row, f, g):
        B, n = h.shape
        out = np.empty_like(h)
        lif_step_np(h, view(row[L.mem], f, (B, n)), view(row[L.beta], f, (n,)),
                    view(row[L.thr], f, (n,)), row[L.zero_reset] == 1, out)  # fmt: skip
        return out

    @njit(nogil=True, cache=True)
    def _lif_reset(B, row, f, g):
        view(row[L.mem], f, (B * row[L.in_size],))[:] = 0

    OPS.add("relu", Op("relu", RELU, _relu, inplace=True))
    OPS.add("lif", Op("lif", LIF_LAYOUT, _lif, _lif_reset))


@register_fuser(nn.ReLU)
def _fuse_relu(module, B, dtype, in_shape):
    n = int(np.prod(in_shape))
    return Row("relu", RELU.pack(in_size=n, out_size=n), (), in_shape, in_shape)


def _passthrough(module, B, dtype, in_shape):
    if isinstance(module, nn.Dropout) and module.training:
        return "a Dropout in training mode (call model.eval())"
    return Row("", [], (), in_shape, in_shape)


register_fuser(nn.Identity)(_passthrough)
register_fuser(nn.Dropout)(_passthrough)


@register_fuser(nn.Flatten)
def _fuse_flatten(module, B, dtype, in_shape):
    full = (B, *in_shape)
    start, end = module.start_dim % len(full), module.end_dim % len(full)
    if start == 0:
        return "a Flatten over the batch dimension (start_dim=0)"
    out = (*full[:start], int(np.prod(full[start : end + 1])), *full[end + 1 :])
    return Row("", [], (), in_shape, out[1:])
