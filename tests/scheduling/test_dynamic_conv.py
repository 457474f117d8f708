"""DynamicLowRankConv2d: per-image ranks, truncated convs, nested prefixes, event = dense, errors."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from braingate.nn.dynamic_conv import DynamicLowRankConv2d
from braingate.scheduling import MagnitudeScorer, RankScheduler


class Preset(RankScheduler):
    """Hands out the ranks it is given (a test double for per-image gates that change)."""

    def __init__(self, r_min: int, r_max: int) -> None:
        self.r_min, self.r_max, self.ranks = r_min, r_max, None

    def schedule_rank(self, complexity_scores, budget=None, **kw):
        return self.ranks


def images(b: int = 6, c: int = 3, hw: int = 9, seed: int = 0) -> torch.Tensor:
    """Images whose scale grows along the batch (so magnitude scores differ per image)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, hw, hw, generator=g) * torch.linspace(0.1, 3.0, b)[:, None, None, None]


def truncated_conv(layer: DynamicLowRankConv2d, x: torch.Tensor, r: int, U, s, V) -> torch.Tensor:
    """The conv whose weight is ``U_{<r} diag(s_{<r}) V_{<r}^T`` (independent of the layer's
    own paths), with the layer's bias and geometry."""
    b = layer.base
    with torch.no_grad():
        w = (U[:, :r] * s[:r]) @ V[:, :r].T
        w = w.reshape(b.out_channels, b.in_channels, *b.kernel_size).to(x.dtype)
        bias = None if b.bias is None else b.bias.to(x.dtype)
        return F.conv2d(x, w, bias, b.stride, b.padding, b.dilation)


def best_truncation(layer: DynamicLowRankConv2d, x: torch.Tensor, r: int) -> torch.Tensor:
    """The conv with the best rank-``r`` approximation (Eckart–Young) of the layer's weight."""
    b = layer.base
    with torch.no_grad():
        W = (b.U * b.s) @ b.V.T
        u, sv, vh = torch.linalg.svd(W.double(), full_matrices=False)
    with torch.no_grad():
        return truncated_conv(layer, x.double(), r, u, sv, vh.T).float()


@pytest.mark.parametrize("geom", [dict(padding=1), dict(stride=2, padding=2, dilation=2)], ids=str)
def test_shapes_and_ranks_in_range(geom):
    torch.manual_seed(0)
    layer = DynamicLowRankConv2d(3, 16, 3, r_max=16, r_min=4, num_gate_blocks=4,
                                 scorer=MagnitudeScorer(), **geom)  # fmt: skip
    x = images()
    y, ranks = layer(x)
    want = F.conv2d(x, torch.zeros(16, 3, 3, 3), None, **geom).shape
    assert y.shape == want and ranks.shape == (6,) and ranks.dtype == torch.long
    assert ((ranks >= 4) & (ranks <= 16)).all()
    assert len(set(ranks.tolist())) >= 2  # per-image ranks: the scales differ
    assert set(ranks.tolist()) <= set(layer.ends.tolist())
    # a (T, B, C, H, W) stream: one rank per image
    ys, rs = layer(x.reshape(2, 3, 3, 9, 9))
    assert ys.shape == (2, 3, *want[1:]) and rs.shape == (6,)
    # default learned scorer: ranks in range too, in training and inference
    layer = DynamicLowRankConv2d(3, 16, 3, r_max=12, r_min=4, padding=1)
    for train in (True, False):
        layer.train(train)
        _, ranks = layer(x)
        assert ((ranks >= 4) & (ranks <= 12)).all()


def test_inference_equals_the_truncated_conv_per_image():
    torch.manual_seed(1)
    layer = DynamicLowRankConv2d(3, 10, 3, r_max=10, r_min=2, num_gate_blocks=5, stride=2,
                                 padding=1, scorer=MagnitudeScorer()).eval()  # fmt: skip
    x = images(8)
    with torch.no_grad():
        y, ranks = layer(x)
    assert len(set(ranks.tolist())) >= 3
    b = layer.base
    for i, r in enumerate(ranks.tolist()):
        ref = truncated_conv(layer, x[i : i + 1], r, b.U, b.s, b.V)
        torch.testing.assert_close(y[i : i + 1], ref, rtol=1e-4, atol=1e-5)


def test_every_prefix_is_the_best_truncation_after_training():
    """Nested training: after optimizer steps (factors no longer canonical), inference at rank r
    is the Eckart–Young best rank-r conv of what was learned, for every block end."""
    torch.manual_seed(2)
    layer = DynamicLowRankConv2d(4, 12, 3, r_max=12, r_min=3, num_gate_blocks=4, padding=1,
                                 nested=0.5)  # fmt: skip
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    x = images(8, 4)
    target = torch.randn(8, 12, 9, 9)
    for _ in range(5):
        y, _ = layer(x)
        loss = F.mse_loss(y, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (layer.last_train_ranks < layer.capacity).any()  # some images trained nested
    layer.eval()
    for r in layer.ends.tolist():
        layer.scheduler = Preset(layer.r_min, layer.r_max)
        layer.scheduler.ranks = torch.full((8,), r)
        with torch.no_grad():
            y, ranks = layer(x)
        assert (ranks == r).all()
        torch.testing.assert_close(y, best_truncation(layer, x, r), rtol=1e-4, atol=1e-4)
    # raw prefixes (forward_ranks) are cumulative: rank r adds units r-1.. to rank r-1's output
    with torch.no_grad():
        out = layer.forward_ranks(x, [1, 2, layer.capacity])
    b = layer.base
    for k, r in enumerate([1, 2, layer.capacity]):
        torch.testing.assert_close(out[:, k], truncated_conv(layer, x, r, b.U, b.s, b.V),
                                   rtol=1e-4, atol=1e-5)  # fmt: skip


def test_nested_images_see_the_best_truncation_in_training():
    torch.manual_seed(3)
    layer = DynamicLowRankConv2d(3, 9, 3, r_max=9, r_min=2, num_gate_blocks=4, padding=1,
                                 nested=1.0)  # fmt: skip
    x = images(6)
    y, _ = layer(x)  # training mode: every image at a random block end
    ranks = layer.last_train_ranks
    assert set(ranks.tolist()) <= set(layer.ends.tolist())
    for i, r in enumerate(ranks.tolist()):
        ref = best_truncation(layer, x[i : i + 1], r)
        torch.testing.assert_close(y[i : i + 1].detach(), ref, rtol=1e-4, atol=1e-4)


def test_planned_images_train_at_the_rank_inference_gives_them():
    torch.manual_seed(8)
    layer = DynamicLowRankConv2d(3, 12, 3, r_max=12, r_min=3, num_gate_blocks=4, padding=1,
                                 planned=1.0, nested=0.0, scorer=MagnitudeScorer())  # fmt: skip
    x = images(8)
    y, planned = layer(x)
    assert len(set(planned.tolist())) >= 2
    assert torch.equal(layer.last_train_ranks, planned)
    for i, r in enumerate(planned.tolist()):
        torch.testing.assert_close(y[i : i + 1].detach(), best_truncation(layer, x[i : i + 1], r),
                                   rtol=1e-4, atol=1e-4)  # fmt: skip
    with pytest.raises(ValueError, match=r"planned=0.8 \+ nested=0.25 exceeds 1"):
        DynamicLowRankConv2d(3, 12, 3, planned=0.8, nested=0.25)


def test_scorer_learns_through_its_objective_and_penalty():
    torch.manual_seed(4)
    layer = DynamicLowRankConv2d(3, 16, 3, r_max=16, r_min=4, scorer_hidden=8, padding=1)
    y, _ = layer(images())
    (y.pow(2).mean() + layer.last_soft_rank.mean()).backward()
    grads = [p.grad for p in layer.scorer.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    assert layer.base.V.grad is not None and float(layer.base.V.grad.abs().sum()) > 0


@pytest.mark.parametrize("grad", [False, True], ids=["kernel", "torch"])
@pytest.mark.parametrize("geom", [dict(padding=1), dict(stride=2, padding=2, dilation=2)], ids=str)
def test_event_equals_dense_at_zero_thresholds_with_per_image_gates(geom, grad):
    torch.manual_seed(5)
    layer = DynamicLowRankConv2d(3, 12, 3, r_max=12, r_min=2, num_gate_blocks=6,
                                 gate_unit=1, **geom).eval()  # fmt: skip
    sched = Preset(layer.r_min, layer.r_max)
    layer.scheduler = sched
    layer.execution = "event"
    B = 4
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(B, 3, 11, 11)
    ends = layer.ends
    for _ in range(10):
        x = x + torch.randn(x.shape, generator=g) * (torch.rand(x.shape, generator=g) < 0.3)
        sched.ranks = ends[torch.randint(len(ends), (B,), generator=g)]  # gates change per frame
        with torch.set_grad_enabled(grad):
            y, ranks = layer(x)
        assert torch.equal(ranks, sched.ranks)
        gate = layer.base.gate_units()
        assert gate.shape == (B, layer.capacity)
        assert torch.equal(gate.sum(1), ranks)  # per-image gates, a prefix each
        b = layer.base
        for i, r in enumerate(ranks.tolist()):
            ref = truncated_conv(layer, x[i : i + 1], r, b.U, b.s, b.V)
            scale = float(ref.abs().max())
            torch.testing.assert_close(y[i : i + 1].detach(), ref, rtol=1e-5, atol=1e-5 * scale)
    counts = layer.base.last_counts
    assert counts is not None and counts.synops.shape == (B,)


def test_energy_scales_with_output_positions_and_budget_caps():
    torch.manual_seed(6)
    layer = DynamicLowRankConv2d(4, 16, 3, r_max=16, r_min=4, padding=1,
                                 scorer=MagnitudeScorer())  # fmt: skip
    with pytest.raises(ValueError, match=r"in_spatial=\(H, W\)"):
        layer.energy_table(8)
    small, big = layer.energy_table(8, (8, 8)), layer.energy_table(8, (16, 16))
    assert (big > 3.5 * small).all() and (big < 4.5 * small).all()  # 4x the positions
    assert (small[1:] > small[:-1]).all()
    x = images(8, 4, 8)
    table = layer.energy_table(8, (8, 8))
    _, ranks = layer(x, budget=float(table[2]))
    assert (ranks <= int(layer.ends[2])).all()
    e = layer.last_energy_mJ
    assert e.shape == (8,) and (e <= float(table[2]) + 1e-12).all()


def test_state_dict_round_trip_and_errors():
    torch.manual_seed(7)
    layer = DynamicLowRankConv2d(3, 8, 3, r_max=8, r_min=2, num_gate_blocks=4, padding=1)
    x = images(5)
    layer(x)[0].sum().backward()  # one training step's worth of change
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.01 * torch.randn_like(p))
    layer.eval()
    with torch.no_grad():
        y, r = layer(x)
    buf = io.BytesIO()
    torch.save(layer.state_dict(), buf)
    buf.seek(0)
    other = DynamicLowRankConv2d(3, 8, 3, r_max=8, r_min=2, num_gate_blocks=4, padding=1)
    other.load_state_dict(torch.load(buf))
    other.eval()
    with torch.no_grad():
        y2, r2 = other(x)
    assert torch.equal(r, r2)
    torch.testing.assert_close(y, y2)

    with pytest.raises(ValueError, match=r"r_max=20 exceeds min\(out_channels, in_channels"):
        DynamicLowRankConv2d(3, 8, 3, r_max=20)
    with pytest.raises(ValueError, match="kernel_size=0"):
        DynamicLowRankConv2d(3, 8, 0)
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 3, H, W\)"):
        layer(torch.randn(2, 4, 9, 9))
    with pytest.raises(ValueError, match="smaller than the dilated kernel"):
        layer(torch.zeros(2, 3, 0, 0))
    layer.execution = "event"
    with pytest.raises(ValueError, match="takes one frame"):
        layer(torch.randn(2, 2, 3, 9, 9))
    with pytest.raises(ValueError, match="ranks="):
        layer.forward_ranks(x, [0])
