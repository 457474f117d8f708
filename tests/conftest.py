"""Shared fixtures: a seeded RNG, and the `gpu` marker's skip when CUDA is absent."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed; also seeds torch for the test."""
    torch.manual_seed(0)
    return np.random.default_rng(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
