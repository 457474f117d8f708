"""Training through events on a model written for torch's recurrent call
(``out, _ = self.gru(x); head(out[-1])``): rollout feeds it one step at a time, as simulate does."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import braingate as bg
from braingate.train.events_in_loop import rollout


class _Net(nn.Module):
    def __init__(self, batch_first: bool = False, h0: bool = False) -> None:
        super().__init__()
        self.gru = nn.GRU(6, 16, batch_first=batch_first)
        self.head = nn.Linear(16, 4)
        self.h0 = h0

    def forward(self, x):
        hx = torch.zeros(1, x.shape[0 if self.gru.batch_first else 1], 16) if self.h0 else None
        out, _ = self.gru(x, hx)
        return self.head(out[:, -1] if self.gru.batch_first else out[-1])


@pytest.mark.parametrize("batch_first, h0", [(False, False), (True, True)])
def test_rollout_steps_a_torch_style_gru_and_matches_simulate(batch_first, h0):
    torch.manual_seed(0)
    net = _Net(batch_first, h0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg.convert(net, rank=8, threshold=0.02, latent_threshold=0.02)
    xs = torch.randn(7, 3, 6).cumsum(0) * 0.3
    ys, tape = rollout(net, xs)
    assert ys.shape == (7, 3, 4)
    ref, _ = bg.simulate(net, xs, mode="event")
    assert torch.allclose(ys.detach(), ref, atol=1e-5)
    (ys.pow(2).mean() + tape.penalty()).backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_rollout_refuses_a_non_zero_initial_state():
    class H(_Net):
        def forward(self, x):
            out, _ = self.gru(x, torch.ones(1, x.shape[1], 16))
            return self.head(out[-1])

    net = H()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg.convert(net, rank=8)
    with pytest.raises(ValueError, match="non-zero initial state"):
        rollout(net, torch.randn(3, 2, 6))
