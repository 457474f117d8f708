"""EventResidual: a small event ResNet steps, compiles, simulates and calibrates like any model."""

import copy

import pytest
import torch
from torch import nn

import braingate as bg
import braingate.convert_conv  # Conv converters
from braingate.nn.base import event_modules
from braingate.nn.event_blocks import EventResidual
from braingate.sim.fused import compile_events


def resnet():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        EventResidual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                    nn.Conv2d(8, 8, 3, padding=1))),
        nn.ReLU(), nn.MaxPool2d(2),
        EventResidual(nn.Conv2d(8, 12, 3, padding=1), shortcut=nn.Conv2d(8, 12, 1)),
        nn.ReLU(), nn.Flatten(), nn.Linear(12 * 4 * 4, 5),
    )  # fmt: skip


def test_event_resnet_equals_dense_at_zero_threshold_compiled_or_not():
    dense = resnet()
    net = bg.convert(copy.deepcopy(dense), rank=1.0, execution="event")
    assert len(event_modules(net)) == 6
    xs = torch.rand(5, 2, 1, 8, 8).cumsum(0)
    chain = compile_events(net)
    with torch.no_grad():
        for x in xs:
            want = dense(x)
            torch.testing.assert_close(chain(x), want, rtol=1e-5, atol=1e-5)
        bg.reset(net)
        for x in xs:
            torch.testing.assert_close(net(x), dense(x), rtol=1e-5, atol=1e-5)
    assert chain.compiled_segments >= 2  # compiled around the residual blocks
    ys, rep = bg.simulate(net, xs, mode="event")
    assert set(rep.layers) >= {"0", "2.body.0", "2.body.2", "5.body", "5.shortcut", "8"}
    torch.testing.assert_close(ys, dense(xs.flatten(0, 1)).unflatten(0, (5, 2)), rtol=1e-4,
                               atol=1e-4)  # fmt: skip


def test_residual_shape_mismatch_is_explained():
    block = EventResidual(nn.Conv2d(2, 3, 3, padding=1))
    with pytest.raises(ValueError, match="residual branches disagree"):
        block(torch.rand(1, 2, 4, 4))
    with pytest.raises(TypeError, match="body must be an nn.Module"):
        EventResidual("conv")
