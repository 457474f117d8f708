"""Synthetic networks for hwmaps unit tests (real-data figures live in benchmarks/mapping.py)."""

from __future__ import annotations

import itertools

import numpy as np

from hwmaps.ir import FactorBlock, Network


def mlp(sizes, rank, blocks, rng: np.random.Generator, rate: float = 0.3) -> Network:
    """A chain of factored layers with random events per step."""
    out, src = [], "in"
    for k, (n, m) in enumerate(itertools.pairwise(sizes)):
        blocks_k = max(1, min(blocks, rank, n, m))
        r = min(rank, n, m) // blocks_k * blocks_k
        rb = r // blocks_k
        ev = tuple(rng.random(n) * rate)
        lat = tuple(rng.random(r) * rate)
        for b in range(blocks_k):
            out.append(FactorBlock(f"{k}.V{b}", str(k), "V", rb, n, src, f"{k}.lat", ev, 0, b * rb))
        out.append(FactorBlock(f"{k}.U", str(k), "U", m, r, f"{k}.lat", f"{k}.out", lat))
        src = f"{k}.out"
    return Network(tuple(out), "mlp")
