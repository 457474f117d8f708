"""Nested ("matryoshka") outputs of DynamicLowRankLayer: forward_ranks and switchable rank bias."""

from __future__ import annotations

import pytest
import torch

from braingate.nn.dynamic import DynamicLowRankLayer
from braingate.scheduling import FixedRankScheduler, MagnitudeScorer


def _layer(rank_bias: bool = True) -> DynamicLowRankLayer:
    layer = DynamicLowRankLayer(20, 12, r_max=8, r_min=2, num_gate_blocks=8, rank_bias=rank_bias,
                                scorer=MagnitudeScorer())  # fmt: skip
    if rank_bias:
        with torch.no_grad():
            layer.rank_bias.copy_(torch.randn(9, 12))
    return layer


def _x(rng, b: int = 6) -> torch.Tensor:
    return torch.from_numpy(rng.normal(size=(b, 20))).float()


@pytest.mark.parametrize("rank_bias", [True, False])
def test_forward_ranks_matches_forward_at_each_rank(rng, rank_bias):
    layer, x = _layer(rank_bias), _x(rng)
    ranks = [2, 3, 5, 8]
    with torch.no_grad():
        ys = layer.forward_ranks(x, ranks)
        assert ys.shape == (6, 4, 12)
        for k, r in enumerate(ranks):
            layer.scheduler = FixedRankScheduler(2, 8, r)
            y, got = layer(x)
            assert (got == r).all()
            torch.testing.assert_close(ys[:, k], y, rtol=1e-4, atol=1e-5)


def test_rank_bias_is_indexed_by_realised_rank_and_learns(rng):
    layer, x = _layer(), _x(rng)
    layer.scheduler = FixedRankScheduler(2, 8, 5)
    with torch.no_grad():
        y_with, _ = layer(x)
        bias_row = layer.rank_bias[5].clone()
        layer.rank_bias.zero_()
        y_without, _ = layer(x)
    torch.testing.assert_close(y_with - y_without, bias_row.expand(6, 12))
    layer.forward_ranks(x, [3, 6]).sum().backward()
    touched = layer.rank_bias.grad.abs().sum(dim=1) > 0
    assert touched.tolist() == [i in (3, 6) for i in range(9)]


@pytest.mark.parametrize("ranks", [[0, 3], [9], []])
def test_forward_ranks_rejects_ranks_out_of_range(rng, ranks):
    with pytest.raises(ValueError, match="must be ints in \\[1, capacity=8\\]"):
        _layer().forward_ranks(_x(rng), ranks)


def test_forward_ranks_rejects_wrong_shape(rng):
    with pytest.raises(ValueError, match="expected \\(B, 20\\)"):
        _layer().forward_ranks(torch.zeros(3, 7), [2])
