"""The partial-sum protocol of input-split V blocks, simulated on recorded traces.

When the ``traffic`` mapper cuts a layer's V block by inputs (:mod:`hwmaps.methods.split`), each
piece on a core other than the accumulator's holds, for every rank unit ``j`` of its rows, the
partial sum of its inputs ``s_{g,j}(t) = Σ_{i ∈ g} V_{ij} x̂_i(t)`` (``x̂``: the layer's last
transmitted inputs; pieces that share a core add theirs into one sum). A piece sends its partial
sum the way the event layer sends a latent unit: when it moved more than the latent threshold
since it was last sent,

.. math:: \\text{send}_{g,j}(t) = |s_{g,j}(t) - \\hat s_{g,j}| > θ_{z,j},
   \\qquad \\hat s_{g,j} \\leftarrow s_{g,j}(t) \\text{ when sent}

(residual carry: what is not sent stays in ``s - ŝ``). :func:`hwmaps.hypergraph.build` prices a
gather net at the accumulated unit's measured event rate per piece core; :func:`protocol_sends`
counts what the protocol actually sends, so the two can be compared (benchmarks/partial_sums.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["protocol_sends", "split_groups"]


def protocol_sends(
    V: np.ndarray, xhat: np.ndarray, groups: Sequence[tuple[int, np.ndarray]], theta_z
) -> np.ndarray:
    """Partial-sum packets of each (rank unit, input group) over a recorded run.

    Args:
        V: the layer's V factor. Shape: (n, R).
        xhat: last transmitted inputs after each step's input events, time first. Shape:
            (T, B, n).
        groups: ``(j, inputs)`` pairs: rank unit ``j`` and the input indices whose partial sum
            one core holds (several pairs may name the same unit).
        theta_z: latent threshold, a scalar or per rank unit (R,).

    Returns:
        packets sent by each pair, summed over steps, mean over the batch. Shape: (len(groups),).
    """
    V = np.asarray(V, dtype=np.float64)
    xhat = np.asarray(xhat, dtype=np.float64)
    if V.ndim != 2 or xhat.ndim != 3 or xhat.shape[-1] != V.shape[0]:
        raise ValueError(f"V {V.shape} and xhat {xhat.shape} must be (n, R) and (T, B, n)")
    th = np.broadcast_to(np.asarray(theta_z, dtype=np.float64), (V.shape[1],))
    if not groups:
        return np.zeros(0)
    T, B, n = xhat.shape
    W = np.zeros((n, len(groups)))  # column k: V[:, j] masked to group k's inputs
    thr = np.empty(len(groups))
    for k, (j, idx) in enumerate(groups):
        W[idx, k] = V[idx, j]
        thr[k] = th[j]
    sums = xhat.reshape(T * B, n) @ W  # (T*B, G) partial sums per step
    sums = sums.reshape(T, B, len(groups))
    sent = np.zeros((B, len(groups)))
    count = np.zeros(len(groups))
    for t in range(T):
        fire = np.abs(sums[t] - sent) > thr
        sent = np.where(fire, sums[t], sent)
        count += fire.sum(0)
    return count / B


def split_groups(placement, block: str) -> list[tuple[int, int, int, np.ndarray]]:
    """The partial-sum senders of one input-split V block of a placement.

    Args:
        placement: a :class:`hwmaps.ir.Placement`.
        block: a V block's name.

    Returns:
        ``[(row, core, accumulator core, columns)]``: for each row of the block, every core
        other than the accumulator's (the core of the row's first column tile) holding pieces
        of that row, with the block columns those pieces read. Empty when the block is not
        split.
    """
    b = placement.network.block(block)
    by_row: dict[int, dict[int, list[np.ndarray]]] = {}
    acc: dict[int, int] = {}
    for t, c in zip(placement.tiles, placement.cores):
        if t.block != block:
            continue
        for r in range(t.row0, t.row1):
            if t.col0 == 0:
                acc[r] = c
            else:
                by_row.setdefault(r, {}).setdefault(c, []).append(np.arange(t.col0, t.col1))
    out = []
    for r in range(b.rows):
        for c, cols in sorted(by_row.get(r, {}).items()):
            if c != acc[r]:
                out.append((r, c, acc[r], np.concatenate(cols)))
    return out
