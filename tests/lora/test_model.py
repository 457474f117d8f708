"""LoRAModel: target matching, named adapters, merging, optimizer, seed LoRALayer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import braingate.lora as L


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8))
        self.attn_proj = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.attn_proj(self.encoder(x)))


def _names(cfg):
    torch.manual_seed(0)
    return sorted(L.LoRAModel(Net(), cfg).lora_layers)


def test_target_matching_like_peft():
    assert _names(L.LoRAConfig(target_modules=["0", "head"])) == ["encoder.0", "head"]
    assert _names(L.LoRAConfig(target_modules=r"encoder\.[02]")) == ["encoder.0", "encoder.2"]
    # regex is a full match: "proj" alone matches nothing, ".*proj" matches attn_proj
    assert _names(L.LoRAConfig(target_modules=r".*proj")) == ["attn_proj"]
    assert _names(L.LoRAConfig()) == ["attn_proj", "encoder.0", "encoder.2", "head"]


def test_nothing_matched_names_the_targets():
    with pytest.raises(ValueError, match=r"target_modules=\['q_proj'\] matched no supported"):
        L.LoRAModel(Net(), L.LoRAConfig(target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="'proj' matched no"):
        L.LoRAModel(Net(), L.LoRAConfig(target_modules="proj"))


def test_unsupported_target_and_mha_raise():
    with pytest.raises(ValueError, match="ReLU, which LoRA cannot wrap"):
        L.LoRAModel(Net(), L.LoRAConfig(target_modules=["encoder.1"]))
    mha = nn.Sequential(nn.MultiheadAttention(8, 2))
    with pytest.raises(ValueError, match="MultiheadAttention"):
        L.LoRAModel(mha, L.LoRAConfig(target_modules=["out_proj"]))


def test_rank_and_alpha_pattern():
    torch.manual_seed(0)
    cfg = L.LoRAConfig(rank=4, alpha=4, rank_pattern={"head": 2}, alpha_pattern={"head": 8})
    layers = L.LoRAModel(Net(), cfg).lora_layers
    assert layers["head"].r["default"] == 2 and layers["head"].scaling["default"] == 4.0
    assert layers["attn_proj"].r["default"] == 4 and layers["attn_proj"].scaling["default"] == 1.0


def test_rslora_scaling():
    torch.manual_seed(0)
    m = L.LoRAModel(Net(), L.LoRAConfig(rank=4, alpha=8, use_rslora=True))
    assert m.lora_layers["head"].scaling["default"] == pytest.approx(8 / math.sqrt(4))


def _perturbed(cfg=None, name="default"):
    torch.manual_seed(0)
    model = L.LoRAModel(Net(), cfg or L.LoRAConfig(rank=2), adapter_name=name)
    with torch.no_grad():
        for p in model.get_trainable_parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def test_multiple_adapters_set_adapter_and_disable():
    model = _perturbed()
    x = torch.randn(4, 6)
    with torch.no_grad():
        with model.disable_adapter():
            base = model(x)
        out_a = model(x)
        model.add_adapter(
            "b", L.LoRAConfig(rank=3, target_modules=["head"], init_lora_weights=False)
        )
        assert model.active_adapters == ["default"]
        torch.testing.assert_close(model(x), out_a)  # inactive adapter changes nothing
        model.set_adapter("b")
        out_b = model(x)
        assert not torch.allclose(out_b, out_a)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        assert trainable and all(".b." in n for n in trainable)
        model.set_adapter(["default", "b"])
        both = model(x)
        assert not torch.allclose(both, out_a) and not torch.allclose(both, out_b)
        head = model.lora_layers["head"]
        h = torch.randn(2, 8)
        d_a = head.lora_adapters["default"]["weight"](h, lambda: head.base_layer.weight)
        d_b = head.lora_adapters["b"]["weight"](h, lambda: head.base_layer.weight)
        torch.testing.assert_close(head(h), head.base_layer(h) + d_a + d_b)
        model.merge()
        with model.disable_adapter():
            torch.testing.assert_close(model(x), base, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model(x), both, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="unknown adapter 'c'"):
        model.set_adapter("c")
    model.unmerge()
    model.delete_adapter("b")
    assert list(model.peft_config) == ["default"]


def test_safe_merge_raises_on_non_finite_and_leaves_state():
    model = _perturbed()
    w0 = model.lora_layers["head"].base_layer.weight.detach().clone()
    w_enc = model.lora_layers["encoder.0"].base_layer.weight.detach().clone()
    with torch.no_grad():
        model.lora_layers["head"].lora_B["default"].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        model.merge(safe_merge=True)
    assert not model.merged
    torch.testing.assert_close(model.lora_layers["head"].base_layer.weight, w0)
    torch.testing.assert_close(model.lora_layers["encoder.0"].base_layer.weight, w_enc)


def test_merge_and_unmerge_toggle_and_merge_and_unload():
    model = _perturbed()
    x = torch.randn(3, 6)
    with torch.no_grad():
        ref = model(x)
        model.merge_and_unmerge()
        assert model.merged
        torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=1e-5)
        model.merge_and_unmerge()
        assert not model.merged
        bare = model.merge_and_unload()
    assert not any(isinstance(m, L.LoRAWrapper) for m in bare.modules())
    assert type(bare.head) is nn.Linear
    torch.testing.assert_close(bare(x), ref, atol=1e-5, rtol=1e-5)


def test_modules_to_save_trainable_copy_and_disable():
    torch.manual_seed(0)
    net = Net()
    model = L.LoRAModel(net, L.LoRAConfig(target_modules=["attn_proj"], modules_to_save=["head"]))
    saved = model.base_model.head
    assert isinstance(saved, L.ModulesToSave)
    assert all(p.requires_grad for p in saved.modules_to_save["default"].parameters())
    assert not any(p.requires_grad for p in saved.original_module.parameters())
    x = torch.randn(2, 6)
    with torch.no_grad():
        saved.modules_to_save["default"].weight.add_(1.0)
        with model.disable_adapter():
            base = model(x)
        assert not torch.allclose(model(x), base)


def test_merge_weights_merges_in_eval_and_unmerges_in_train():
    model = L.LoRAModel(Net(), L.LoRAConfig(rank=2), merge_weights=True)
    model.eval()
    assert model.merged
    model.train()
    assert not model.merged


def test_lora_plus_groups_and_scheduler_compatibility():
    model = _perturbed()
    opt = L.LoRAOptimizer(model, lr=1e-3, weight_decay=0.01, loraplus_lr_ratio=16)
    lrs = sorted(g["lr"] for g in opt.param_groups)
    assert lrs == [pytest.approx(1e-3), pytest.approx(16e-3)]
    b_ids = {id(p) for g in opt.param_groups if g["lr"] > 2e-3 for p in g["params"]}
    assert b_ids == {id(w.lora_B["default"].weight) for w in model.lora_layers.values()}
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    model(torch.randn(2, 6)).sum().backward()
    opt.step()
    sched.step()
    assert sorted(g["lr"] for g in opt.optimizer.param_groups) == [
        pytest.approx(5e-4),
        pytest.approx(8e-3),
    ]
    state = opt.state_dict()
    opt2 = L.LoRAOptimizer(model, lr=1e-3, loraplus_lr_ratio=16)
    opt2.load_state_dict(state)
    assert opt2.global_step == 1


def test_optimizer_bad_input():
    with pytest.raises(ValueError, match="lr=-1"):
        L.LoRAOptimizer(_perturbed(), lr=-1)
    with pytest.raises(ValueError, match="no trainable parameters"):
        L.LoRAOptimizer(nn.Linear(2, 2).requires_grad_(False))


def test_apply_lora_to_model_trains_only_adapters(rng):
    torch.manual_seed(0)
    net = Net()
    frozen = {n: p.detach().clone() for n, p in net.named_parameters()}
    model, opt = L.apply_lora_to_model(net, {"rank": 2, "alpha": 4}, lr=1e-2)
    x = torch.from_numpy(rng.standard_normal((16, 6))).float()
    y = torch.from_numpy(rng.integers(0, 3, 16))
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for name, w in model.lora_layers.items():
        torch.testing.assert_close(w.base_layer.weight, frozen[f"{name}.weight"])


def test_seed_lora_layer_merge_round_trip():
    torch.manual_seed(0)
    layer = L.LoRALayer(6, 4, rank=2, alpha=4, merge_weights=True)
    assert (layer.in_features, layer.out_features, layer.rank, layer.alpha) == (6, 4, 2, 4)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    w0 = layer.base_layer.weight.detach().clone()
    x = torch.randn(3, 6)
    ref = layer(x).detach()
    layer.merge_lora_weights()
    torch.testing.assert_close(layer(x), ref, atol=1e-5, rtol=1e-5)
    layer.unmerge_lora_weights()
    torch.testing.assert_close(layer.base_layer.weight, w0, atol=1e-6, rtol=0)
    layer.eval()  # merge_weights: merged in eval mode
    assert layer.merged
    layer.train()
    assert not layer.merged


def test_import_does_not_pull_peft_or_safetensors():
    import subprocess
    import sys

    code = (
        "import sys, braingate.lora; "
        "print('peft' in sys.modules, 'safetensors' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]


def test_load_adapter_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        L.load_adapter(Net(), tmp_path)
    model = _perturbed()
    model.save_adapter(tmp_path)
    other = nn.Sequential(nn.Linear(6, 8))
    with pytest.raises(ValueError, match="matched no supported layer|does not fit"):
        L.load_adapter(other, tmp_path)
