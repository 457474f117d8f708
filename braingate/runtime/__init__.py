"""The event runtime: compiled ops, the modules that lower to them, and chains of ops.

- :mod:`~braingate.runtime.layout`: kernel argument layouts, declared once.
- :mod:`~braingate.runtime.ops`: the op and fuser registries, the runtime lock.
- :mod:`~braingate.runtime.chain`: one compiled call per step for a sequence of ops.
- :mod:`~braingate.runtime.linear`, :mod:`~braingate.runtime.elementwise`: the built-in ops.

Backends: the torch reference (``functional/``, used under autograd and on CUDA) and the
compiled CPU kernels registered here (numba). A CUDA backend would register its own ops.
"""

from braingate.runtime import elementwise, linear  # noqa: F401 - registers the built-in ops
from braingate.runtime.chain import chain_kernels
from braingate.runtime.layout import Layout
from braingate.runtime.ops import FUSERS, OPS, RUNTIME_LOCK, Op, Row, fuser_for, register_fuser

__all__ = [
    "FUSERS",
    "OPS",
    "RUNTIME_LOCK",
    "Layout",
    "Op",
    "Row",
    "chain_kernels",
    "fuser_for",
    "register_fuser",
]
