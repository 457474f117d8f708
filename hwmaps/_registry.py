"""A tiny name -> object registry; an unknown name lists the known ones.

The same behaviour as ``braingate._registry.Registry`` (hwmaps does not import braingate): a
duplicate name raises ValueError, an unknown one lists the known names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories for one extension point (chips, mapping methods, extractors).

    Args:
        kind: what the entries are, used in error messages ("chip", "mapping method").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` and return it; a duplicate name raises ValueError."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"{self.kind} name {name!r} must be a non-empty string")
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered; pick another name")
        self._items[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`; returns the object unchanged."""

        def deco(obj: T) -> T:
            return self.add(name, obj)

        return deco

    def get(self, name: str) -> T:
        """The entry for ``name``; unknown names raise ValueError listing the known ones."""
        if not isinstance(name, str) or name not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)
