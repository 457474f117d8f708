"""Complexity scorers."""

from __future__ import annotations

import pytest
import torch

from braingate.scheduling import (
    InputChangeScorer,
    MagnitudeScorer,
    MLPComplexityScorer,
    make_scorer,
)
from braingate.scheduling.scorers import LatentScorer, scorer_flops


def test_mlp_scorer_range_and_gradient(rng):
    sc = MLPComplexityScorer(16, hidden=8)
    x = torch.from_numpy(rng.normal(size=(5, 16))).float()
    c = sc(x)
    assert c.shape == (5,) and ((c > 0) & (c < 1)).all()
    c.sum().backward()
    assert sc.net[0].weight.grad.abs().sum() > 0


def test_input_change_scorer_ranks_bigger_changes_higher():
    sc = InputChangeScorer()
    sc(torch.zeros(3, 4))
    c = sc(torch.tensor([[0.0] * 4, [0.1] * 4, [1.0] * 4]))
    assert c[0] < c[1] < c[2]
    sc.reset()
    assert sc._prev is None


def test_magnitude_scorer_monotone():
    c = MagnitudeScorer()(torch.tensor([[0.1, 0.1], [1.0, 1.0], [3.0, 3.0]]))
    assert c[0] < c[1] < c[2] and ((c >= 0) & (c < 1)).all()


def test_scorer_registry_and_errors():
    assert isinstance(make_scorer("input_change", 4), InputChangeScorer)
    assert isinstance(make_scorer("latent", 4, hidden=3), LatentScorer)
    with pytest.raises(ValueError, match="known: input_change, latent, magnitude, mlp"):
        make_scorer("entropy", 4)
    with pytest.raises(ValueError, match="shape"):
        MLPComplexityScorer(4)(torch.zeros(2, 5))


def test_latent_scorer_reads_latent_units_and_counts_flops():
    sc = LatentScorer(6, hidden=4)
    assert sc.reads == "latent" and sc.units == 6
    assert sc(torch.randn(3, 6)).shape == (3,)
    # RMS normalisation (3k) + (k+1)->h + h->1 + sigmoid: 18 + 56 + 8 + 4
    assert scorer_flops(sc, 999) == 86.0
    assert scorer_flops(MagnitudeScorer(), 10) == 23.0
    assert scorer_flops(torch.nn.Identity(), 10) is None
    with pytest.raises(ValueError, match="units=0"):
        LatentScorer(0)
