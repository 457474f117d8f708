"""Optional integrations: NIR, NeuroBench, PyTorch Lightning, DDP and Ray Tune.

Each submodule imports its third-party dependency only when used and raises ImportError naming
the extra to install (``pip install 'braingate[nir]'``, ``[neurobench]``, ``[lightning]``,
``[tune]``). Importing this package imports none of them.

- :mod:`braingate.integrations.nir`: :func:`to_nir` / :func:`from_nir`.
- :mod:`braingate.integrations.neurobench`: :class:`NeuroBenchModel`.
- :mod:`braingate.integrations.lightning`: :class:`BraingateMetricsCallback`.
- :mod:`braingate.integrations.distributed`: :func:`wrap_ddp`, :func:`run_ddp`.
- :mod:`braingate.integrations.tune`: :func:`sweep`, :func:`pareto_front`.
"""

from __future__ import annotations

import importlib

__all__ = ["distributed", "lightning", "neurobench", "nir", "tune"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f"braingate.integrations.{name}")
    raise AttributeError(
        f"module 'braingate.integrations' has no attribute {name!r}; known: {__all__}"
    )
