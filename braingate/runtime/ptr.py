"""Typed views of raw addresses inside compiled kernels (numba only).

Numba unboxes every array argument (~0.1 µs each); a chain of layers passes one int64 descriptor
of addresses instead and views each array in place with :func:`view`. The callers guarantee that
every address belongs to an array the runtime owns and keeps alive (see ``runtime.chain``).
"""

from __future__ import annotations

from braingate.functional._kernels import AVAILABLE

__all__ = ["AVAILABLE", "view"]

view = None
if AVAILABLE:
    from numba import carray, njit
    from numba.core import types as _nbt
    from numba.extending import intrinsic

    @intrinsic
    def _at(typingctx, addr, like):
        """A typed pointer to ``addr`` with the element type of the array ``like``."""
        ptr = _nbt.CPointer(like.dtype)

        def codegen(context, builder, sig, args):
            return builder.inttoptr(args[0], context.get_value_type(ptr))

        return ptr(_nbt.int64, like), codegen

    @njit(inline="always", nogil=True)
    def view(addr, like, shape):
        """The C-contiguous array of ``shape`` at ``addr`` with ``like``'s dtype."""
        return carray(_at(addr, like), shape)
