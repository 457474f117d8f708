"""Behaviour of the variants PEFT lacks: sparsity kept, pruning schedule, per-sample conditions."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import braingate.lora as L
from braingate.lora.variants.pruning import pruning_schedule


def _train(model, steps, rng, n_in=8):
    opt = L.LoRAOptimizer(model, lr=1e-2)
    x = torch.from_numpy(rng.standard_normal((16, n_in))).float()
    for _ in range(steps):
        (model(x) ** 2).mean().backward()
        opt.step()
        opt.zero_grad()


def test_sparse_lora_keeps_sparsity_through_training(rng):
    torch.manual_seed(0)
    cfg = L.LoRAConfig(rank=4, variant=L.SparseLoRAConfig(sparsity=0.75, seed=1))
    model = L.LoRAModel(nn.Sequential(nn.Linear(8, 8)), cfg)
    ad = model.adapters("default")[0]
    assert int((ad.mask_A == 0).sum()) == 24 and int((ad.mask_B == 0).sum()) == 24
    _train(model, 10, rng)
    assert torch.all(ad.lora_A.weight[ad.mask_A == 0] == 0)
    assert torch.all(ad.lora_B.weight[ad.mask_B == 0] == 0)
    assert ad.lora_B.weight.abs().sum() > 0  # it did train


def test_pruning_schedule_values():
    assert pruning_schedule(0, 0.6, 0, 10) == 0.0
    assert pruning_schedule(10, 0.6, 0, 10) == 0.6
    assert pruning_schedule(5, 0.6, 0, 10) == pytest.approx(0.6 * (1 - 0.5**3))
    seq = [pruning_schedule(t, 0.6, 2, 12) for t in range(15)]
    assert all(a <= b for a, b in itertools.pairwise(seq))


@pytest.mark.parametrize("granularity", ["entry", "rank"])
def test_pruning_reaches_target_monotonically(rng, granularity):
    torch.manual_seed(0)
    cfg = L.PruningAwareLoRAConfig(
        target_sparsity=0.5, granularity=granularity, end_step=8, every=2
    )
    model = L.LoRAModel(nn.Sequential(nn.Linear(8, 8)), L.LoRAConfig(rank=4, variant=cfg))
    ad = model.adapters("default")[0]
    opt = L.LoRAOptimizer(model, lr=1e-2)
    x = torch.from_numpy(rng.standard_normal((16, 8))).float()
    prev = ad.mask_A.clone()
    for _ in range(10):
        (model(x) ** 2).mean().backward()
        opt.step()
        opt.zero_grad()
        assert torch.all(ad.mask_A <= prev)  # a pruned entry never comes back
        prev = ad.mask_A.clone()
    assert float((ad.mask_A == 0).float().mean()) == pytest.approx(0.5)
    if granularity == "rank":
        alive = ad.mask_A.amax(1)
        assert int(alive.sum()) == 2
        torch.testing.assert_close(ad.mask_B.amax(0), alive)
    assert torch.all(ad.lora_A.weight[ad.mask_A == 0] == 0)


def test_conditional_mixed_batch_equals_per_task_runs():
    torch.manual_seed(0)
    cfg = L.LoRAConfig(
        rank=2, variant=L.ConditionalLoRAConfig(num_tasks=3), init_lora_weights=False
    )
    model = L.LoRAModel(nn.Sequential(nn.Linear(5, 4)), cfg)
    x = torch.randn(6, 5)
    ids = torch.tensor([0, 2, 1, 2, 0, 1])
    with torch.no_grad():
        mixed = model(x, task_ids=ids)
        for t in range(3):
            single = model(x[ids == t], task_ids=t)
            torch.testing.assert_close(mixed[ids == t], single)
    with pytest.raises(ValueError, match="needs task ids"):
        model(x)
    with pytest.raises(ValueError, match="out of range"):
        model(x, task_ids=5)
    with model.condition(task_ids=ids), pytest.raises(ValueError, match="single task id"):
        model.merge()


def test_hyper_lora_embedding_changes_the_delta():
    torch.manual_seed(0)
    cfg = L.LoRAConfig(
        rank=2, variant=L.HyperLoRAConfig(task_embedding_dim=4, hidden=8), init_lora_weights=False
    )
    model = L.LoRAModel(nn.Sequential(nn.Linear(5, 4)), cfg)
    x = torch.randn(3, 5)
    e = torch.randn(3, 4)
    with torch.no_grad():
        per_sample = model(x, task_embedding=e)
        for i in range(3):
            torch.testing.assert_close(
                per_sample[i : i + 1], model(x[i : i + 1], task_embedding=e[i])
            )
        assert not torch.allclose(model(x, task_embedding=e[0]), model(x, task_embedding=e[1]))
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        model(x, task_embedding=torch.randn(7))


def test_attention_guided_weights_depend_on_input():
    torch.manual_seed(0)
    cfg = L.LoRAConfig(rank=3, variant="attention", init_lora_weights=False)
    model = L.LoRAModel(nn.Sequential(nn.Linear(5, 4)), cfg)
    ad = model.adapters("default")[0]
    x = torch.randn(2, 5)
    with torch.no_grad():
        plain = ad.kind.apply(x, ad.lora_A.weight, ad.lora_B.weight) * ad.scaling
        torch.testing.assert_close(ad(x, None), plain)  # zero attention = plain LoRA
        ad.lora_attention.weight.normal_()
        assert not torch.allclose(ad(x, None), plain)


def test_dora_magnitude_is_initialised_to_row_norms():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    norms = lin.weight.norm(dim=1).detach().clone()
    model = L.LoRAModel(nn.Sequential(lin), L.LoRAConfig(rank=2, variant="dora"))
    torch.testing.assert_close(model.adapters("default")[0].lora_magnitude_vector, norms)


def test_unknown_variant_lists_known():
    with pytest.raises(ValueError, match="known variants: adalora, attention, conditional, dora"):
        L.get_variant("vera")
