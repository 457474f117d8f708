"""Numba's on-disk cache and braingate's kernel sources kept in step.

Numba keys a cached function on its own file's timestamp only; a compiled op that calls a kernel
defined in another file (``runtime/linear.py`` calls ``functional/_kernels.py``) keeps the old
machine code after that other file changes, and so do the generated chain modules. So the
fingerprint of every kernel source of the package (path, size, mtime) is stamped beside the
caches; when it changes (an edited or upgraded checkout), braingate's cached kernels are deleted
before any is loaded, and generated chains are named after the fingerprint.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["FINGERPRINT", "clear_stale_caches"]

_ROOT = Path(__file__).resolve().parent  # the braingate package
_KERNEL_DIRS = ("functional", "runtime", "nn")  # where compiled kernels and their callers live


def _fingerprint() -> str:
    h = hashlib.sha1()
    sources = [p for d in _KERNEL_DIRS for p in (_ROOT / d).rglob("*.py")]
    for path in sorted(sources):
        try:
            st = path.stat()
        except OSError:
            continue
        h.update(f"{path.relative_to(_ROOT)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


FINGERPRINT = _fingerprint()


def clear_stale_caches() -> None:
    """Delete braingate's numba cache files when the sources changed since they were written."""
    stamp = _ROOT / "__pycache__" / "numba_kernels.stamp"
    try:
        if stamp.exists() and stamp.read_text() == FINGERPRINT:
            return
        for cache in _ROOT.rglob("__pycache__"):
            for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
                f.unlink(missing_ok=True)
        stamp.parent.mkdir(exist_ok=True)
        tmp = stamp.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(FINGERPRINT)
        os.replace(tmp, stamp)
    except OSError:  # a read-only install: numba then caches elsewhere, by the same rules
        pass
