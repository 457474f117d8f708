"""Shared fixtures: a seeded RNG, and the `gpu` marker's skip when CUDA is absent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

# One intra-op thread: the suite's tensors are small, and on a shared 2-core machine a second
# thread mostly adds contention (a tiny nn.Linear was measured 200x slower with 2 threads there).
torch.set_num_threads(1)


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
