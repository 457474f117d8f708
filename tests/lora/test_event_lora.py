"""EventLoRA: the adapter's delta runs through EventLinear and simulate counts its synops."""

from __future__ import annotations

import torch
from torch import nn

import braingate.lora as L
from braingate.sim import simulate


def _model(threshold=0.0, latent=0.0):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 12))
    cfg = L.LoRAConfig(
        rank=4, variant=L.EventLoRAConfig(threshold, latent), init_lora_weights=False
    )
    return L.LoRAModel(net, cfg)


def _stream(rng, T=20, B=3):
    steps = rng.standard_normal((T, B, 16)) * 0.05
    return torch.from_numpy(steps.cumsum(0) + rng.standard_normal((1, B, 16))).float()


def test_event_mode_equals_dense_with_zero_thresholds(rng):
    model = _model()
    xs = _stream(rng)
    ys, report = simulate(model, xs, mode="event")
    with torch.no_grad():
        torch.testing.assert_close(ys, model(xs), atol=1e-5, rtol=1e-5)
    name = "base_model.0.lora_adapters.default.weight.event"
    assert name in report.layers
    assert report.layers[name]["synops"] > 0
    assert "base_model.0.base_layer" in report.layers  # the dense base, counted as nn.Linear


def test_thresholds_cut_adapter_synops_with_bounded_error(rng):
    xs = _stream(rng)
    _, dense_report = simulate(_model(), xs, mode="event")
    model = _model(threshold=0.1, latent=0.01)
    ys, report = simulate(model, xs, mode="event")
    name = "base_model.0.lora_adapters.default.weight.event"
    sparse, full = report.layers[name]["synops"], dense_report.layers[name]["synops"]
    assert sparse < 0.6 * full
    with torch.no_grad():
        ref = model(xs)
    ev = model.adapters("default")[0].event
    w = ev.dense_weight()
    bound = 0.1 * w.abs().sum(1).max() + 0.01 * (ev.U * ev.s).abs().sum(1).max()
    assert (ys - ref).abs().max() <= bound + 1e-5
