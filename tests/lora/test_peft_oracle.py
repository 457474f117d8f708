"""PEFT as the oracle: same outputs for the same weights; adapter files move both ways."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import braingate.lora as L

from ._peft import import_peft


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.emb = nn.Embedding(10, 8)
        self.fc = nn.Linear(4 * 5 * 5 + 8, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, img, tok):
        z = torch.cat([self.conv(img).flatten(1), self.emb(tok)], dim=1)
        return self.head(torch.relu(self.fc(z)))


def _inputs():
    g = torch.Generator().manual_seed(5)
    return torch.randn(2, 3, 5, 5, generator=g), torch.randint(0, 10, (2,), generator=g)


def _perturb(model, seed=3):
    torch.manual_seed(seed)
    with torch.no_grad():
        for _n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.2 * torch.randn_like(p))


@pytest.fixture
def peft():
    return import_peft()


CASES = [
    dict(rank=2, alpha=4, target_modules=["conv", "fc"]),
    dict(rank=3, alpha=5, target_modules=["conv", "fc", "emb"], use_rslora=True),
    dict(rank=2, alpha=2, target_modules=r"(conv|fc)", modules_to_save=["head"]),
    dict(rank=2, alpha=4, target_modules=["conv", "fc"], variant="dora"),
]


def _peft_config(peft, c):
    return peft.LoraConfig(
        r=c["rank"],
        lora_alpha=c["alpha"],
        target_modules=c["target_modules"],
        use_rslora=c.get("use_rslora", False),
        modules_to_save=c.get("modules_to_save"),
        use_dora=c.get("variant") == "dora",
    )


@pytest.mark.parametrize("case", CASES)
def test_braingate_saved_adapter_loads_in_peft_with_identical_outputs(peft, case, tmp_path):
    torch.manual_seed(0)
    base = Net()
    ours = L.LoRAModel(copy.deepcopy(base), L.LoRAConfig(**case))
    _perturb(ours)
    ours.save_adapter(tmp_path)
    theirs = peft.PeftModel.from_pretrained(copy.deepcopy(base), tmp_path)
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(theirs(*x), ours(*x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("case", CASES)
def test_peft_saved_adapter_loads_in_braingate_with_identical_outputs(peft, case, tmp_path):
    torch.manual_seed(0)
    base = Net()
    theirs = peft.get_peft_model(copy.deepcopy(base), _peft_config(peft, case))
    _perturb(theirs)
    theirs.save_pretrained(tmp_path)
    ours = L.load_adapter(copy.deepcopy(base), tmp_path)
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(ours(*x), theirs(*x), atol=1e-5, rtol=1e-5)
        ours.merge()  # merged forward agrees too
        torch.testing.assert_close(ours(*x), theirs(*x), atol=1e-5, rtol=1e-5)


def test_same_init_and_scaling_as_peft(peft):
    torch.manual_seed(0)
    base = Net()
    theirs = peft.get_peft_model(
        copy.deepcopy(base), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["fc"])
    )
    ours = L.LoRAModel(copy.deepcopy(base), L.LoRAConfig(rank=4, alpha=8, target_modules=["fc"]))
    t, o = theirs.base_model.model.fc, ours.lora_layers["fc"]
    assert o.scaling["default"] == t.scaling["default"] == 2.0
    assert torch.count_nonzero(o.lora_B["default"].weight) == 0
    bound = 1 / (6 * 4 + 8) ** 0.5 * 1.0001  # kaiming_uniform(a=sqrt(5)) bound 1/sqrt(fan_in)
    assert o.lora_A["default"].weight.abs().max() <= bound
    assert o.lora_A["default"].weight.shape == t.lora_A["default"].weight.shape
    assert sorted(ours.peft_config) == ["default"]


def test_merge_and_unload_matches_peft(peft):
    torch.manual_seed(0)
    base = Net()
    case = dict(rank=2, alpha=4, target_modules=["conv", "fc", "emb"])
    theirs = peft.get_peft_model(copy.deepcopy(base), _peft_config(peft, case))
    _perturb(theirs)
    ours = L.LoRAModel(copy.deepcopy(base), L.LoRAConfig(**case))
    ours.load_state_dict(
        {
            k.replace("base_model.model.", "base_model.")
            .replace(".lora_A.default", ".lora_adapters.default.weight.lora_A")
            .replace(".lora_B.default", ".lora_adapters.default.weight.lora_B")
            .replace(".lora_embedding_A.default", ".lora_adapters.default.weight.lora_A.weight")
            .replace(".lora_embedding_B.default", ".lora_adapters.default.weight.lora_B.weight"): v
            for k, v in theirs.state_dict().items()
        },
        strict=True,
    )
    x = _inputs()
    with torch.no_grad():
        a = theirs.merge_and_unload()(*x)
        b = ours.merge_and_unload()(*x)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
