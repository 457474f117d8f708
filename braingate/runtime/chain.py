"""A chain of compiled ops as one compiled call per step.

For a sequence of op names, :func:`chain_kernels` generates (once per sequence, then cached) a
numba function that views the input at an address and runs each op on the previous op's output:

.. code-block:: python

    def chain_step(x_addr, B, desc, f, g):
        h = view(x_addr, f, (B, desc[0, 0]))
        h = op0_step(h, desc[0], f, g)
        h = op1_step(h, desc[1], f, g)
        return h

so adding an op type never edits this file. ``desc`` holds one row per op (padded to the widest
row), built by :class:`~braingate.sim.fused.EventChain` from the ops' fusers.
"""

from __future__ import annotations

from collections.abc import Callable

from braingate.runtime.ops import OPS
from braingate.runtime.ptr import AVAILABLE, view

__all__ = ["chain_kernels"]

_CACHE: dict[tuple[str, ...], tuple[Callable, Callable]] = {}


def chain_kernels(ops: tuple[str, ...]) -> tuple[Callable, Callable]:
    """``(step, reset)`` compiled for the op sequence ``ops`` (numba must be available).

    ``step(x_addr, B, desc, f, g) -> out`` runs one time step; ``reset(B, desc, f, g)`` zeroes
    every op's state in one call.
    """
    if not AVAILABLE:
        raise RuntimeError("compiled chains need numba; install it or use module stepping")
    ops = tuple(ops)
    hit = _CACHE.get(ops)
    if hit is not None:
        return hit
    from numba import njit

    ns: dict = {"view": view}
    step = ["def chain_step(x_addr, B, desc, f, g):", "    h = view(x_addr, f, (B, desc[0, 0]))"]
    reset = ["def chain_reset(B, desc, f, g):", "    pass"]
    for k, name in enumerate(ops):
        op = OPS.get(name)
        ns[f"s{k}"] = op.step
        step.append(f"    h = s{k}(h, desc[{k}], f, g)")
        if op.reset is not None:
            ns[f"r{k}"] = op.reset
            reset.append(f"    r{k}(B, desc[{k}], f, g)")
    step.append("    return h")
    exec("\n".join(step) + "\n\n" + "\n".join(reset) + "\n", ns)
    kernels = (njit(nogil=True)(ns["chain_step"]), njit(nogil=True)(ns["chain_reset"]))
    _CACHE[ops] = kernels
    return kernels
