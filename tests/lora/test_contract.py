"""One contract table over every registered LoRA variant and every wrapped layer type."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import braingate.lora as L
from braingate.lora.quant import Linear4bit

VARIANTS = {
    "lora": lambda: None,
    "dora": L.DoRAConfig,
    "adalora": lambda: L.AdaLoRAConfig(target_r=2, init_r=4, total_step=10),
    "qlora": L.QLoRAConfig,
    "hyper": lambda: L.HyperLoRAConfig(task_embedding_dim=5, hidden=8),
    "conditional": lambda: L.ConditionalLoRAConfig(num_tasks=3),
    "sparse": lambda: L.SparseLoRAConfig(sparsity=0.5, seed=0),
    "pruning": lambda: L.PruningAwareLoRAConfig(target_sparsity=0.5, end_step=4, every=1),
    "attention": L.AttentionGuidedLoRAConfig,
    "event": lambda: L.EventLoRAConfig(threshold=0.0),
}
CONDITIONS = {
    "hyper": {"task_embedding": torch.linspace(-1, 1, 5)},
    "conditional": {"task_ids": 1},
}
MERGE_RAISES = {"attention"}


def test_table_covers_every_registered_variant():
    assert set(VARIANTS) == set(L.variants())


class Holder(nn.Module):
    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, *inputs):
        out = self.layer(*inputs)
        return torch.cat([o.flatten() for o in out]) if isinstance(out, tuple) else out


def _layer(name: str):
    g = torch.Generator().manual_seed(1)
    if name == "linear":
        return nn.Linear(6, 5), (torch.randn(3, 6, generator=g),)
    if name == "conv":
        return nn.Conv2d(3, 4, 3, padding=1), (torch.randn(2, 3, 6, 6, generator=g),)
    if name == "embedding":
        return nn.Embedding(10, 6), (torch.randint(0, 10, (3, 4), generator=g),)
    x, h = torch.randn(3, 4, generator=g), torch.randn(3, 5, generator=g)
    if name == "rnn":
        return nn.RNNCell(4, 5), (x, h)
    if name == "lstm":
        return nn.LSTMCell(4, 5), (x, (h, torch.randn(3, 5, generator=g)))
    return nn.GRUCell(4, 5), (x, h)


LAYERS = ["linear", "conv", "embedding", "rnn", "lstm", "gru"]
KIND = {"linear": "linear", "conv": "conv", "embedding": "embedding"}


def _supported(variant: str, layer: str) -> bool:
    cfg = L.LoRAConfig(variant=VARIANTS[variant]())
    _, strategy = L.get_variant(cfg.variant_name)
    if variant == "qlora":
        return layer == "linear"
    return KIND.get(layer, "linear") in strategy.kinds


CASES = [(v, lay) for v in VARIANTS for lay in LAYERS]
SUPPORTED = [c for c in CASES if _supported(*c)]
UNSUPPORTED = [c for c in CASES if not _supported(*c)]


def _wrap(variant: str, layer: str, init=True):
    torch.manual_seed(0)
    base, inputs = _layer(layer)
    original = Holder(copy.deepcopy(base))
    cfg = L.LoRAConfig(
        rank=2,
        alpha=4,
        target_modules=["layer"],
        variant=VARIANTS[variant](),
        init_lora_weights=init,
    )
    model = L.LoRAModel(Holder(base), cfg)
    return original, model, inputs, CONDITIONS.get(variant, {})


def _perturb(model: L.LoRAModel) -> None:
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.get_trainable_parameters():
            p.add_(0.3 * torch.randn_like(p))


def _base_weights(model: L.LoRAModel) -> dict[str, torch.Tensor]:
    w = model.lora_layers["layer"]
    return {s: w.slot_weight(s).detach().clone() for s in w.slots}


@pytest.mark.parametrize(("variant", "layer"), SUPPORTED)
def test_default_init_leaves_outputs_unchanged(variant, layer):
    original, model, inputs, cond = _wrap(variant, layer)
    with torch.no_grad():
        out = model(*inputs, **cond)
        with model.disable_adapter():
            base_out = model(*inputs)
        torch.testing.assert_close(out, base_out, atol=1e-6, rtol=0)
        if variant != "qlora":  # QLoRA's base is the 4-bit copy of the original
            torch.testing.assert_close(out, original(*inputs), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("variant", "layer"), SUPPORTED)
def test_merge_forward_equals_unmerged_and_unmerge_restores(variant, layer):
    _, model, inputs, cond = _wrap(variant, layer)
    _perturb(model)
    w0 = _base_weights(model)
    with torch.no_grad(), model.condition(**cond):
        unmerged = model(*inputs)
        with model.disable_adapter():
            assert not torch.allclose(model(*inputs), unmerged, atol=1e-4)
        if variant in MERGE_RAISES:
            with pytest.raises(ValueError, match="cannot be merged"):
                model.merge()
            assert not model.merged
            torch.testing.assert_close(_base_weights(model), w0, atol=0, rtol=0)
            return
        target = {s: w0[s] + model.lora_layers["layer"].get_delta_weight("default", s) for s in w0}
        model.merge()
        merged = model(*inputs)
        if variant == "qlora":  # merging into NF4 rounds W + ΔW: see QLoRA's docstring
            w = _base_weights(model)["weight"]
            expected = L.quantize_nf4(target["weight"], 64, double_quant=True).dequantize()
            torch.testing.assert_close(w, expected, atol=1e-6, rtol=0)
            half_gap = (L.NF4_CODE[1:] - L.NF4_CODE[:-1]).max() / 2
            bound = half_gap * target["weight"].abs().max() * 1.01
            assert (w - target["weight"]).abs().max() <= bound
        else:
            torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=1e-5)
        model.unmerge()
        if variant != "qlora":
            torch.testing.assert_close(_base_weights(model), w0, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model(*inputs), unmerged, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("variant", "layer"), SUPPORTED)
def test_save_load_round_trip(variant, layer, tmp_path):
    original, model, inputs, cond = _wrap(variant, layer)
    _perturb(model)
    model.save_adapter(tmp_path)
    loaded = L.load_adapter(copy.deepcopy(original), tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(*inputs, **cond), model(*inputs, **cond), atol=1e-6, rtol=0
        )


@pytest.mark.parametrize(("variant", "layer"), SUPPORTED)
def test_gradients_only_on_adapter_parameters(variant, layer):
    _, model, inputs, cond = _wrap(variant, layer)
    out = model(*inputs, **cond)
    (out.float() ** 2).sum().backward()
    wrapper = model.lora_layers["layer"]
    for p in wrapper.base_layer.parameters():
        assert p.grad is None and not p.requires_grad
    adapter_params = {id(p) for p in wrapper.lora_adapters.parameters()}
    trainable = model.get_trainable_parameters()
    assert trainable and all(id(p) in adapter_params for p in trainable)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)


@pytest.mark.parametrize(("variant", "layer"), UNSUPPORTED)
def test_unsupported_layer_raises_clear_error(variant, layer):
    with pytest.raises(ValueError, match="cannot adapt layer|does not support|quantises"):
        _wrap(variant, layer)


BAD_CONFIGS = [
    (lambda: L.LoRAConfig(rank=0), ValueError, "rank=0"),
    (lambda: L.LoRAConfig(alpha=-1), ValueError, "alpha=-1"),
    (lambda: L.LoRAConfig(dropout=1.5), ValueError, "dropout=1.5"),
    (lambda: L.LoRAConfig(target_modules=5), TypeError, "target_modules=5"),
    (lambda: L.LoRAConfig(variant="nope"), ValueError, "known variants: adalora"),
    (lambda: L.LoRAConfig(bias="all"), ValueError, "bias='all'"),
    (lambda: L.DoRAConfig(rank=3), TypeError, "rank"),
    (lambda: L.AdaLoRAConfig(target_r=16, init_r=8), ValueError, "target_r=16"),
    (lambda: L.AdaLoRAConfig(tinit=10, total_step=10), ValueError, "tinit=10"),
    (lambda: L.QLoRAConfig(blocksize=3), ValueError, "blocksize=3"),
    (lambda: L.HyperLoRAConfig(task_embedding_dim=0), ValueError, "task_embedding_dim=0"),
    (lambda: L.ConditionalLoRAConfig(num_tasks=0), ValueError, "num_tasks=0"),
    (lambda: L.SparseLoRAConfig(sparsity=1.0), ValueError, "sparsity=1.0"),
    (lambda: L.PruningAwareLoRAConfig(granularity="row"), ValueError, "granularity='row'"),
    (lambda: L.AttentionGuidedLoRAConfig(temperature=0), ValueError, "temperature=0"),
    (lambda: L.EventLoRAConfig(threshold=-1), ValueError, "threshold=-1"),
]


@pytest.mark.parametrize(("make", "exc", "match"), BAD_CONFIGS)
def test_bad_configs_raise(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_qlora_base_is_four_bit():
    _, model, _, _ = _wrap("qlora", "linear")
    assert isinstance(model.lora_layers["layer"].base_layer, Linear4bit)
