"""Weight splitting (Γ): group outputs equal, last layer skipped, clear width errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from braingate.bio import BioConverter


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 3))


@pytest.mark.parametrize("gamma", [2, 4])
def test_groups_equal_and_match_formula(gamma, rng):
    plain = _mlp()
    model = BioConverter(weight_splitting_Gamma=gamma)(_mlp())
    model.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(5, 6)
    h = model[0](x)
    groups = h.view(5, 8 // gamma, gamma)
    assert torch.equal(groups, groups[..., :1].expand_as(groups))  # equal inside each group
    ref = plain[0](x).view(5, -1, gamma).sum(-1).repeat_interleave(gamma, dim=1)
    torch.testing.assert_close(h, ref)
    assert model[2].bio_mod.weight_splitting
    assert not model[4].bio_mod.weight_splitting  # the last layer is skipped
    torch.testing.assert_close(model[4](h[:, :4]), plain[4](h[:, :4]))


def test_activation_applied_before_group_sum(rng):
    conv = BioConverter(weight_splitting_Gamma=2, weight_splitting_activation_function=nn.ReLU())
    plain = _mlp()
    model = conv(_mlp())
    model.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(5, 6)
    ref = F.relu(plain[0](x)).view(5, 4, 2).sum(-1).repeat_interleave(2, dim=1)
    torch.testing.assert_close(model[0](x), ref)


def test_conv2d_groups_channels(rng):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(4 * 5 * 5, 2)

        def forward(self, x):
            return self.head(self.conv(x).flatten(1))

    plain = Net()
    model = BioConverter(weight_splitting_Gamma=2)(Net)()
    model.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 3, 5, 5)
    ref = plain.conv(x).view(2, 2, 2, 5, 5).sum(2).repeat_interleave(2, dim=1)
    torch.testing.assert_close(model.conv(x), ref)
    assert model(x).shape == (2, 2)


def test_marked_module_is_skipped(rng):
    model = _mlp()
    BioConverter.set_last_module_token_for_module(model[2])
    model = BioConverter(weight_splitting_Gamma=2)(model)
    assert [model[i].bio_mod.weight_splitting for i in (0, 2, 4)] == [True, False, False]


def test_gamma_not_dividing_width_is_a_clear_error_and_touches_nothing(rng):
    model = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 5), nn.Linear(5, 2))
    with pytest.raises(
        ValueError,
        match=r"weight_splitting_Gamma=2 must evenly divide the number of features of layer '1' "
        r"\(out=5\); pass a Γ that divides it",
    ):
        BioConverter(weight_splitting_Gamma=2)(model)
    assert not any(hasattr(m, "bio_mod") for m in model)
    assert not hasattr(model, "crystallize")
    BioConverter.set_last_module_token_for_module(model[1])
    BioConverter(weight_splitting_Gamma=2)(model)  # now the 5-wide layer is skipped
    assert model(torch.randn(3, 4)).shape == (3, 2)


def test_gamma_one_or_zero_disables(rng):
    for gamma in (0, 1):
        model = BioConverter(weight_splitting_Gamma=gamma)(_mlp())
        assert not any(m.bio_mod.weight_splitting for m in model if hasattr(m, "bio_mod"))
        assert all(not m._forward_hooks for m in model)
