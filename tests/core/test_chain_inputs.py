"""Compiled chains and inputs they were not lowered for: another dtype, modules that return
tuples (found by trying the runtime as a new user would)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import braingate as bg


def _module_path(net, xs):
    bg.reset(net)
    with torch.no_grad():
        return [net(x) for x in xs]


@pytest.mark.parametrize("first, then", [(torch.float32, torch.float64),
                                         (torch.float64, torch.float32)])  # fmt: skip
def test_a_step_in_another_dtype_is_never_read_as_the_lowered_one(first, then):
    torch.manual_seed(0)
    net = nn.Sequential(bg.EventLinear(6, 5, 4), nn.ReLU(), bg.EventLinear(5, 3, 3)).to(first)
    bg.execution(net, "event")
    chain = bg.sim.compile_events(net)
    x = torch.rand(2, 6, dtype=first)
    with torch.no_grad():
        chain(x)
        # the layers' factors are `first`: the module path refuses the other dtype, and the chain
        # must say the same rather than read the input's bytes as `first`
        with pytest.raises((TypeError, ValueError)) as chained:
            chain(x.to(then))
        with pytest.raises(type(chained.value)):
            net(x.to(then))
        again = chain(x)  # still usable afterwards
    assert again.dtype == first and torch.isfinite(again).all()


def test_a_converted_cnn_chain_refuses_float64_after_float32():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten())
    bg.convert(net, rank=1.0, execution="event")
    chain = bg.sim.compile_events(net)
    x = torch.rand(2, 1, 5, 5)
    with torch.no_grad():
        ref = chain(x)
        with pytest.raises((TypeError, ValueError)):
            chain(x.double())
        assert torch.isfinite(ref).all() and ref.abs().max() < 1e3


def test_a_module_returning_a_tuple_ends_lowering_and_runs_as_a_module_call():
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    net = nn.Sequential(bg.EventLinear(4, 3, 3), snn.Leaky(beta=0.9, init_hidden=True,
                                                             output=True))  # fmt: skip
    bg.execution(net, "event")
    xs = [torch.rand(2, 4) for _ in range(5)]
    ref = _module_path(net, xs)
    net[1].reset_mem()
    chain = bg.sim.compile_events(net, strict=False)
    bg.reset(net)
    net[1].reset_mem()
    with torch.no_grad():
        got = [chain(x) for x in xs]
    for (s1, m1), (s2, m2) in zip(ref, got, strict=True):
        assert torch.equal(s1, s2) and torch.allclose(m1, m2)
