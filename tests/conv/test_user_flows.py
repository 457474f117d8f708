"""CNNs as a torch user writes them, converted and simulated: what stays dense is counted and
reported, what cannot convert is left dense with the reason (never a crash of ``bg.convert``)."""

import copy
import itertools
import warnings

import pytest
import torch
from torch import nn

import braingate as bg
from braingate.conv_dense import _count_conv


def _convert(net, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        bg.convert(net, **kw)
    return [str(x.message) for x in w]


def test_padding_same_with_an_even_kernel_stays_dense_with_the_reason():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 4, padding="same"), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding="same", dilation=2), nn.Flatten()).eval()  # fmt: skip
    xs = torch.rand(3, 2, 1, 9, 9)
    with torch.no_grad():
        want = torch.stack([net(x) for x in xs])
    msgs = _convert(net, rank=1.0)  # was: ValueError from EventConv2d, nothing converted
    rep = net.conversion_report
    assert not rep["0"]["converted"] and "padding='same'" in rep["0"]["reason"]
    assert rep["2"]["converted"] and isinstance(net[2], bg.EventConv2d)
    assert any("padding='same'" in m for m in msgs)
    ys, report = bg.simulate(net, xs, mode="event")
    torch.testing.assert_close(ys, want, rtol=1e-5, atol=1e-5)
    assert report.layers["0"]["dense"]


@pytest.mark.parametrize(
    "layer,shape",
    [
        (nn.Conv3d(2, 3, 3, padding=1), (2, 2, 4, 6, 6)),
        (nn.ConvTranspose2d(2, 3, 3, stride=2, padding=1, output_padding=1), (2, 2, 5, 5)),
        (nn.ConvTranspose1d(2, 4, 3, stride=2, groups=2), (2, 2, 7)),
    ],
    ids=["conv3d", "convT2d", "convT1d"],
)
def test_dense_convs_without_a_converter_are_counted(layer, shape):
    """Conv3d and transposed convs stay dense; the warning says simulate counts them at their
    dense cost, so the report must (they were missing from every total)."""
    torch.manual_seed(0)
    net = nn.Sequential(layer, nn.Flatten())
    x = torch.rand(3, *shape)
    x[x < 0.5] = 0
    _, rep = bg.simulate(net, x, mode="event")
    assert "0" in rep.layers and rep.layers["0"]["dense"]
    w = layer.weight
    transposed = isinstance(layer, nn.modules.conv._ConvTransposeNd)
    with torch.no_grad():
        y = layer(x[0])
    per_sample = (x[0][0].numel() if transposed else y[0].numel()) * w[0].numel()
    assert rep.layers["0"]["dense_synops"] == pytest.approx(3 * per_sample)
    assert 0 < rep.layers["0"]["synops"] < rep.layers["0"]["dense_synops"]


def test_transposed_conv_synops_equal_a_brute_force_count():
    torch.manual_seed(1)
    ct = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1)
    x = (torch.rand(2, 3, 5, 5) > 0.6).float()
    with torch.no_grad():
        y = ct(x)
    counts, _ = _count_conv(ct, x, y)
    Ho, Wo = y.shape[-2:]
    want = [0, 0]
    for b, ci, i, j in itertools.product(range(2), range(3), range(5), range(5)):
        if x[b, ci, i, j]:
            for _co, a, c in itertools.product(range(2), range(3), range(3)):
                oi, oj = 2 * i - 1 + a, 2 * j - 1 + c
                want[b] += 0 <= oi < Ho and 0 <= oj < Wo
    assert counts.synops.tolist() == want


def test_snntorch_conv_net_with_an_output_neuron_simulates_spike_for_spike():
    """snntorch's ``Leaky(output=True)`` returns ``(spk, mem)``; simulate keeps the spikes
    (it failed stacking the tuples) and they equal snntorch's own run at θ = 0."""
    snn = pytest.importorskip("snntorch")
    from snntorch import utils

    torch.manual_seed(0)

    def leaky(**kw):
        return snn.Leaky(beta=0.9, init_hidden=True, **kw)

    ref = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.MaxPool2d(2), leaky(), nn.Flatten(),
                        nn.Linear(4 * 4 * 4, 5), leaky(output=True)).eval()  # fmt: skip
    for m in ref.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.data *= 4
    xs = (torch.rand(8, 3, 2, 8, 8) > 0.7).float()
    utils.reset(ref)
    with torch.no_grad():
        want = torch.stack([ref(x)[0] for x in xs])
    net = copy.deepcopy(ref)
    _convert(net, rank=1.0)
    for mode in ("event", "dense"):
        ys, _ = bg.simulate(net, xs, mode=mode)
        assert want.sum() > 0
        torch.testing.assert_close(ys, want)
