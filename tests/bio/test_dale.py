"""Dale's principle: one fixed sign per unit, kept through optimiser steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from braingate.bio import BioConverter, DaleMode


def _consistent(w: torch.Tensor, unit_dim: int) -> bool:
    dims = [d for d in range(w.dim()) if d != unit_dim]
    pos = (w > 0).sum(dim=dims) if dims else (w > 0).long()
    neg = (w < 0).sum(dim=dims) if dims else (w < 0).long()
    return bool(((pos == 0) | (neg == 0)).all())


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.fc1 = nn.Linear(4 * 4 * 4, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        h = torch.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


@pytest.mark.parametrize(
    ("mode", "unit_dim"), [(DaleMode.PRESYNAPTIC, 1), (DaleMode.OUTPUT_ROW, 0)]
)
def test_sign_per_unit_survives_training(mode, unit_dim, rng):
    model = BioConverter(apply_dales_principle=True, dales_principle_mode=mode)(Net())
    layers = (model.conv, model.fc1, model.fc2)
    signs = [m.bio_mod.dale_sign_weight.clone() for m in layers]
    for m in layers:
        assert _consistent(m.weight.detach(), unit_dim)  # enforced at conversion
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(32, 2, 6, 6), torch.randint(0, 3, (32,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        model.fuzzy_learning_rates()
        opt.step()
        model.enforce_dales_principle()
        model.rejuvenate_weights()  # fresh weights take their unit's sign
    for m, s in zip(layers, signs):
        w = m.weight.detach()
        assert _consistent(w, unit_dim)
        shape = [1] * w.dim()
        shape[unit_dim] = -1
        assert bool((w * s.view(shape) >= 0).all())  # the sign is the one fixed at conversion
        assert torch.equal(m.bio_mod.dale_sign_weight, s)


def test_presynaptic_is_the_column_sign(rng):
    layer = nn.Linear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [-0.5, 1.0, -1.0]]))
    BioConverter(apply_dales_principle=True)(nn.Sequential(layer))
    assert torch.equal(layer.bio_mod.dale_sign_weight, torch.tensor([1.0, -1.0, -1.0]))
    expected = torch.tensor([[1.0, -2.0, 0.0], [0.0, 0.0, -1.0]])
    assert torch.equal(layer.weight.detach(), expected)


def test_enforce_without_dale_is_a_clear_error(rng):
    model = BioConverter()(nn.Sequential(nn.Linear(3, 2)))
    w = model[0].weight.detach().clone()
    with pytest.raises(ValueError, match="needs apply_dales_principle=True"):
        model.enforce_dales_principle()
    assert torch.equal(model[0].weight.detach(), w)
