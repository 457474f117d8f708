"""One name -> object registry for every braingate extension point.

Schedulers, energy presets, bio distributions and layer targets, LoRA variants, event layer
types and per-op kernels each keep one :class:`Registry`. They all behave the same way: a
duplicate name raises ``ValueError``; an unknown name raises ``ValueError`` listing the known
ones. Keys are usually strings; any hashable key works (an enum member, a class).

Example:
    >>> reg = Registry("widget")
    >>> @reg.register("spoon")
    ... def spoon():
    ...     return "spoon"
    >>> _ = reg.add("fork", lambda: "fork")
    >>> reg.names(), "spoon" in reg, reg.get("fork")()
    (['spoon', 'fork'], True, 'fork')
    >>> reg.get("knife")
    Traceback (most recent call last):
    ...
    ValueError: unknown widget 'knife'; known: fork, spoon
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


def _label(key: Hashable) -> str:
    """How a key is written in error messages and name lists."""
    if isinstance(key, str):
        return key
    if isinstance(key, enum.Enum):
        return key.name
    if isinstance(key, type):
        return key.__qualname__
    return repr(key)


class Registry(Generic[T]):
    """Maps names to objects (classes, factories, presets) for one extension point.

    Args:
        kind: what the entries are, used in error messages ("scheduler", "energy model").
    """

    def __init__(self, kind: str) -> None:
        if not isinstance(kind, str) or not kind:
            raise ValueError(f"kind={kind!r} must be a non-empty string such as 'scheduler'")
        self.kind = kind
        self._items: dict[Hashable, T] = {}

    def add(self, name: Hashable, obj: T) -> T:
        """Register ``obj`` under ``name`` and return it; a duplicate name raises ValueError."""
        try:
            hash(name)
        except TypeError:
            raise TypeError(f"{self.kind} name {name!r} is not hashable; pass a string") from None
        if name in self._items:
            raise ValueError(
                f"{self.kind} {_label(name)!r} is already registered; pick another name"
            )
        self._items[name] = obj
        return obj

    def register(self, name: Hashable) -> Callable[[T], T]:
        """Decorator form of :meth:`add`: ``@reg.register("name")`` returns the object unchanged."""

        def deco(obj: T) -> T:
            return self.add(name, obj)

        return deco

    def get(self, name: Hashable) -> T:
        """The entry for ``name``; an unknown name raises ValueError listing the known ones."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(_label(k) for k in self._items)) or "(none)"
            raise ValueError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def remove(self, name: Hashable) -> T:
        """Unregister ``name`` and return its entry (for tests and plugins that unload)."""
        obj = self.get(name)
        del self._items[name]
        return obj

    def names(self) -> list[Hashable]:
        """Registered names in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._items
        except TypeError:
            return False

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._items)} entries)"
