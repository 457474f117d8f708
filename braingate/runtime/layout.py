"""Kernel argument layouts, declared once: the packer and the compiled kernel read the same names.

A compiled op receives one row of an int64 descriptor: sizes and data addresses. Its
:class:`Layout` names the columns; ``layout.at`` is a NamedTuple of column indices that numba
folds into constants (``row[LINEAR.at.V]``), and :meth:`Layout.pack` builds a row from keyword
arguments, so no column is ever addressed by a bare number.

Every layout starts with ``in_size`` and ``out_size`` (features per sample flowing into and out
of the op, flat): the chain uses them to view the input and to check that ops fit together.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Layout"]

_COMMON = ("in_size", "out_size")


class Layout:
    """Named columns of one op's descriptor row.

    Args:
        op: the op's name (for error messages).
        fields: column names after ``in_size`` and ``out_size``, space separated.
    """

    def __init__(self, op: str, fields: str) -> None:
        names = _COMMON + tuple(fields.split())
        if len(set(names)) != len(names):
            raise ValueError(f"layout of {op!r} repeats a field: {names}")
        self.op = op
        self.fields = names
        self.at = NamedTuple(f"{op.title().replace('_', '')}Columns", [(n, int) for n in names])(
            *range(len(names))
        )

    def __len__(self) -> int:
        return len(self.fields)

    def pack(self, **values: int) -> list[int]:
        """The row for ``values`` (every field exactly once, ints)."""
        missing = [f for f in self.fields if f not in values]
        extra = [k for k in values if k not in self.at._fields]
        if missing or extra:
            raise ValueError(f"{self.op} row: missing {missing}, unknown {extra}")
        return [int(values[f]) for f in self.fields]
