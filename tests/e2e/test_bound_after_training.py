"""A network trained with events in the loop keeps the event path's error bound (DESIGN §2)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import braingate as bg
from braingate.train.events_in_loop import rollout


@pytest.fixture(scope="module")
def trained() -> bg.EventLinear:
    torch.manual_seed(0)
    layer = bg.EventLinear(12, 10, 6, threshold=0.05, latent_threshold=0.05)
    layer.learn_thresholds(per_unit=True)
    target = torch.randn(12, 10) * 0.3
    opt = torch.optim.Adam(layer.parameters(), lr=0.02)
    for _ in range(15):
        xs = torch.randn(16, 8, 12).cumsum(0) * 0.2
        out, tape = rollout(layer, xs)
        loss = (out - xs @ target).pow(2).mean() + 0.5 * tape.penalty()
        opt.zero_grad()
        loss.backward()
        opt.step()
    layer.freeze_thresholds()
    return layer


def test_training_moved_thresholds_apart(trained):
    th = trained.threshold
    assert isinstance(th, torch.Tensor) and th.shape == (12,)
    assert float((th - 0.05).abs().min()) > 1e-3  # every unit moved from its start value
    assert float(th.max() - th.min()) > 0  # ... each by its own gradient


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.floats(0.01, 2.0), steps=st.integers(1, 60))
def test_bound_holds_for_trained_layer(trained, seed, scale, steps):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(steps, 3, 12, generator=g).cumsum(0) * scale
    ys, _ = bg.simulate(trained, xs)
    with torch.no_grad():
        exact = xs @ trained.dense_weight().t() + trained.bias
        us = (trained.U * trained.s).abs()
        bound = (trained.dense_weight().abs() @ trained.threshold).max() + (
            us @ trained.latent_threshold
        ).max()
    err = (ys - exact).abs().amax(dim=(1, 2))
    assert bool((err <= bound + 1e-4).all()), (float(err.max()), float(bound))
