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

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from braingate._numba_cache import FINGERPRINT
from braingate.runtime.ops import OPS
from braingate.runtime.ptr import AVAILABLE, view

__all__ = ["chain_kernels", "entry_point"]

_CACHE: dict[tuple[str, ...], tuple[Callable, Callable]] = {}


def chain_kernels(ops: tuple[str, ...]) -> tuple[Callable, Callable]:
    """``(step, reset)`` compiled for the op sequence ``ops`` (numba must be available).

    ``step(x_addr, B, desc, f, g) -> out`` runs one time step; ``reset(B, desc, f, g)`` zeroes
    every op's state in one call. When every op's kernels are importable by module path, the
    generated source is written to a small module in the user's cache directory, so numba's
    on-disk cache spares later processes the compilation (~1.5 s per sequence); otherwise (ops
    defined in a closure, a read-only home) it is compiled in memory.
    """
    if not AVAILABLE:
        raise RuntimeError("compiled chains need numba; install it or use module stepping")
    ops = tuple(ops)
    hit = _CACHE.get(ops)
    if hit is not None:
        return hit
    found = [OPS.get(name) for name in ops]
    kernels = _from_file(found) or _in_memory(found)
    _CACHE[ops] = kernels
    return kernels


def entry_point(fn, *args) -> Callable:
    """The compiled function of the numba dispatcher ``fn`` for exactly the types of ``args``
    (compiled or loaded from numba's cache if needed).

    Calling it skips numba's per-call dispatch (typing every argument, looking up the overload:
    ~0.3-0.5 µs, a tenth of a sparse batch-1 step). The caller must pass arguments of these
    types on every call: the runtime does, with the arrays and witnesses it built at lowering.
    """
    compile_for = getattr(fn, "compile", None)
    if compile_for is None:  # a plain function (numba's JIT disabled): nothing to skip
        return fn
    from numba import typeof

    return compile_for(tuple(typeof(a) for a in args))


def _body(n_ops: int, resets: list[bool], first_inplace: bool = False) -> list[str]:
    lines = ["def chain_step(x_addr, B, desc, f, g):", "    h = view(x_addr, f, (B, desc[0, 0]))"]
    if first_inplace:  # the caller's input is never written
        lines.append("    h = h.copy()")
    lines += [f"    h = s{k}(h, desc[{k}], f, g)" for k in range(n_ops)]
    lines += ["    return h", "", "", "def chain_reset(B, desc, f, g):", "    pass"]
    lines += [f"    r{k}(B, desc[{k}], f, g)" for k in range(n_ops) if resets[k]]
    return lines


def _in_memory(found: list) -> tuple[Callable, Callable]:
    from numba import njit

    ns: dict = {"view": view}
    for k, op in enumerate(found):
        ns[f"s{k}"], ns[f"r{k}"] = op.step, op.reset
    body = _body(len(found), [op.reset is not None for op in found], found[0].inplace)
    exec("\n".join(body) + "\n", ns)
    return njit(nogil=True)(ns["chain_step"]), njit(nogil=True)(ns["chain_reset"])


def _importable(fn) -> tuple[str, str] | None:
    py = getattr(fn, "py_func", fn)
    mod, name = getattr(py, "__module__", None), getattr(py, "__name__", None)
    if not mod or not name or sys.modules.get(mod) is None:
        return None
    return (mod, name) if getattr(sys.modules[mod], name, None) is fn else None


def _from_file(found: list) -> tuple[Callable, Callable] | None:
    refs = []
    for op in found:
        step = _importable(op.step)
        reset = _importable(op.reset) if op.reset is not None else ("", "")
        if step is None or reset is None:
            return None
        refs.append((step, reset))
    lines = ["from numba import njit", "", "from braingate.runtime.ptr import view"]
    for k, ((sm, sn), (rm, rn)) in enumerate(refs):
        lines.append(f"from {sm} import {sn} as s{k}")
        if rm:
            lines.append(f"from {rm} import {rn} as r{k}")
    body = _body(len(found), [op.reset is not None for op in found], found[0].inplace)
    src = (
        "\n".join(lines)
        + "\n\n\n@njit(nogil=True, cache=True)\n"
        + "\n".join(body).replace(
            "\n\n\ndef chain_reset", "\n\n\n@njit(nogil=True, cache=True)\ndef chain_reset"
        )
        + "\n"
    )
    digest = hashlib.sha1((src + FINGERPRINT).encode()).hexdigest()[:16]
    try:
        folder = _cache_dir()
        path = folder / f"chain_{digest}.py"
        if not path.exists():  # written once, atomically: numba's cache keys on its mtime
            tmp = folder / f".chain_{digest}.{os.getpid()}.tmp"
            tmp.write_text(src)
            os.replace(tmp, path)
        name = f"_braingate_chain_{digest}"
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # numba's cache re-imports it by name
            spec.loader.exec_module(module)
    except (OSError, ImportError):
        return None
    return module.chain_step, module.chain_reset


def _cache_dir() -> Path:
    root = os.environ.get("BRAINGATE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "braingate"
    )
    folder = Path(root) / "chains"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
