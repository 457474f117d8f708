"""AdaLoRA: budget schedule, masking, allocation driven by LoRAOptimizer, orthogonality."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import braingate.lora as L
from braingate.lora.variants.adalora import adalora_budget


@pytest.mark.parametrize("tinit,tfinal,total", [(0, 0, 100), (10, 20, 100), (5, 0, 30)])
def test_budget_schedule(tinit, tfinal, total):
    b0, bT = 48, 16
    for t in range(0, total + 5):
        b = adalora_budget(t, b0, bT, tinit, tfinal, total)
        if t <= tinit:
            assert b == b0
        elif t >= total - tfinal:
            assert b == bT
        else:
            frac = 1 - (t - tinit) / (total - tfinal - tinit)
            assert b == int(bT + (b0 - bT) * frac**3)
            assert bT <= b <= b0
    seq = [adalora_budget(t, b0, bT, tinit, tfinal, total) for t in range(total + 1)]
    assert all(x >= y for x, y in itertools.pairwise(seq))  # never increases


def _model(total_step=20, **kw):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    cfg = L.AdaLoRAConfig(target_r=2, init_r=6, total_step=total_step, **kw)
    return L.LoRAModel(net, L.LoRAConfig(alpha=6, variant=cfg))


def test_optimizer_step_drives_allocation_to_target_budget(rng):
    model = _model(total_step=20, tinit=2, tfinal=5)
    opt = L.LoRAOptimizer(model, lr=1e-2)
    x = torch.from_numpy(rng.standard_normal((32, 8))).float()
    y = torch.from_numpy(rng.standard_normal((32, 4))).float()
    budgets = []
    for _ in range(20):
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        budgets.append(sum(int(a.rank_mask.sum()) for a in model.adapters("default")))
    assert budgets[0] == 12  # step 1 <= tinit: all init_r triplets
    assert budgets[-1] == 4  # target_r * layers
    assert budgets[14] == 4  # reached at T - t_final = 15
    for a in model.adapters("default"):
        assert torch.all(a.lora_E[a.rank_mask == 0] == 0)


def test_masked_triplets_stop_contributing():
    model = _model()
    ad = model.adapters("default")[0]
    with torch.no_grad():
        ad.lora_E.normal_()
    ad.strategy.mask_to_budget([ad], 3)
    x = torch.randn(4, 8)
    before = model(x).detach()
    dead = ad.rank_mask == 0
    assert int(dead.sum()) == 3
    with torch.no_grad():
        ad.lora_E[dead] = 5.0
        ad.lora_A.weight[dead] += 1.0
        ad.lora_B.weight[:, dead] += 1.0
    torch.testing.assert_close(model(x), before)


def test_orthogonal_regulariser_and_its_gradient_in_step():
    model = _model()
    reg = model.regularization_loss()
    assert reg.item() > 0 and reg.requires_grad
    ad = model.adapters("default")[0]
    a = ad.lora_A.weight
    eye = torch.eye(6)
    expected = torch.linalg.matrix_norm(a @ a.T - eye) + torch.linalg.matrix_norm(
        ad.lora_B.weight.T @ ad.lora_B.weight - eye
    )
    ad2 = model.adapters("default")[1]
    expected2 = torch.linalg.matrix_norm(
        ad2.lora_A.weight @ ad2.lora_A.weight.T - eye
    ) + torch.linalg.matrix_norm(ad2.lora_B.weight.T @ ad2.lora_B.weight - eye)
    torch.testing.assert_close(reg, 0.5 * (expected + expected2) / 2)
    opt = L.LoRAOptimizer(model, lr=1e-2, optimizer_class=torch.optim.SGD)
    a0 = a.detach().clone()
    opt.step()  # no task loss at all: the regulariser alone moves A
    assert not torch.equal(a0, a.detach())


def test_total_step_required_for_training():
    torch.manual_seed(0)
    model = L.LoRAModel(nn.Sequential(nn.Linear(4, 4)), L.LoRAConfig(variant="adalora"))
    opt = L.LoRAOptimizer(model)
    model(torch.randn(2, 4)).sum().backward()
    with pytest.raises(ValueError, match="total_step"):
        opt.step()


def test_seed_adalora_layer_update_rank():
    layer = L.AdaLoRALayer(16, 16, max_rank=8, min_rank=2)
    assert layer.current_rank == 8
    layer.update_rank(0.5)  # no importance yet: clipped to min_rank
    assert layer.current_rank == 2
