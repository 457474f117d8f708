"""Invariants of the pure rules (hypothesis) and a GPU run of the whole method set."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from braingate.bio import BioConverter
from braingate.bio import functional as F

shapes = st.tuples(st.integers(1, 4), st.integers(1, 4), st.sampled_from([1, 2, 3]))


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 2**31 - 1))
def test_split_outputs_invariants(shape, seed):
    batch, groups, gamma = shape
    y = torch.randn(batch, groups * gamma, generator=torch.Generator().manual_seed(seed))
    out = F.split_outputs(y, gamma, torch.tanh, dim=-1)
    g = out.view(batch, groups, gamma)
    assert torch.equal(g, g[..., :1].expand_as(g))
    torch.testing.assert_close(out.sum(), gamma * torch.tanh(y).sum())


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 1), st.integers(0, 2**31 - 1))
def test_enforce_dale_invariants(m, n, unit_dim, seed):
    w = torch.randn(m, n, generator=torch.Generator().manual_seed(seed))
    sign = F.dale_signs(w, unit_dim)
    out = F.enforce_dale(w, sign, unit_dim)
    assert torch.equal(F.enforce_dale(out, sign, unit_dim), out)  # idempotent
    kept = out != 0
    assert torch.equal(out[kept], w[kept])  # only zeroes entries, never changes them
    shape = [1, 1]
    shape[unit_dim] = -1
    assert bool((out * sign.view(shape) >= 0).all())


@settings(max_examples=30, deadline=None)
@given(st.floats(0.0, 50.0), st.integers(0, 2**31 - 1))
def test_crystallize_only_shrinks(damp_thresh, seed):
    gen = torch.Generator().manual_seed(seed)
    p, g, w = (torch.rand(6, 5, generator=gen) + 0.5 for _ in range(3))
    out = F.crystallize(p, g, w, damp_thresh, 0.6)
    assert bool(((out == p) | torch.isclose(out, 0.6 * p)).all())


@pytest.mark.gpu
def test_all_methods_on_cuda():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    model = BioConverter(weight_splitting_Gamma=2, apply_dales_principle=True)(model).cuda()
    assert model[0].bio_mod.fuzzy_learning_rate_parameters.is_cuda
    model(torch.randn(8, 1, 8, 8, device="cuda")).sum().backward()
    for name in ("scale_grad", "volume_dependent_lr", "fuzzy_learning_rates", "crystallize",
                 "rejuvenate_weights", "enforce_dales_principle"):  # fmt: skip
        getattr(model, name)()
    assert model[2].weight.grad.is_cuda and model[0].weight.is_cuda
