"""Lazy import of optional dependencies with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise ImportError naming ``pip install 'braingate[extra]'``.

    Args:
        module: importable module name, e.g. ``"nir"`` or ``"ray.tune"``.
        extra: the braingate extra that installs it, e.g. ``"nir"``.

    Returns:
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"this braingate integration needs the optional package {module.split('.')[0]!r}, "
            f"which is not installed; install it with: pip install 'braingate[{extra}]'"
        ) from e
