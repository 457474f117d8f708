"""hwmaps for event CNNs: channel-space blocks with measured traffic, and Speck's conv-core fit."""

import copy

import pytest
import torch
from torch import nn

import braingate as bg
import braingate.convert_conv  # Conv converters
import hwmaps
import hwmaps.extract_conv  # registers the conv extractor
from hwmaps.extract_conv import SpeckLayer, conv_memory, speck_fit, speck_layers


def cnn(c1=8, c2=16, hw=16):
    torch.manual_seed(0)
    dense = nn.Sequential(
        nn.Conv2d(2, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * (hw // 4) ** 2, 10),
    )  # fmt: skip
    return bg.convert(copy.deepcopy(dense), rank={"0": 6, "3": 8, "7": 10}, blocks=2)


def test_conv_layers_become_channel_blocks_with_measured_traffic():
    net = cnn()
    xs = torch.rand(6, 3, 2, 16, 16).cumsum(0)
    _, rep = bg.simulate(net, xs, mode="event")
    graph = hwmaps.extract(net, rep)
    names = [b.name for b in graph.blocks]
    assert names[:3] == ["0.V0", "0.V1", "0.U"] and "3.U" in names and "7.U" in names
    v0 = graph.block("0.V0")
    assert (v0.rows, v0.cols) == (3, 2)  # R/B latent channels x C_in channels
    total_in = sum(rep.layers["0"]["input_unit_events"]) / 6
    assert sum(v0.source_events) == pytest.approx(total_in)
    assert graph.block("3.V0").source == "0.out"  # the conv chain links core to core
    mem = conv_memory(rep.layers["3"])
    assert mem["taps"] == 9 and mem["positions"] == 64
    assert mem["kernel_weights"] == 8 * 8 * 9 + 16 * 8
    placement = hwmaps.map_network(graph, hwmaps.chips.get("generic"), method="sequential")
    assert hwmaps.estimate(placement).total_j > 0


def test_speck_memory_follows_sinabs_formulas():
    # sinabs memory_summary: K = c_in·2^(⌈log2 kh·kw⌉ + ⌈log2 c_out⌉), N = c_out·2^(⌈log2 h⌉+⌈log2 w⌉)
    layer = SpeckLayer("a", 3, 12, (3, 3), (30, 30))
    assert layer.kernel_memory == 3 * 2 ** (4 + 4)
    assert layer.neuron_memory == 12 * 2 ** (5 + 5)


def test_speck_fit_small_cnn_fits_and_a_large_one_does_not():
    net = cnn()
    _, rep = bg.simulate(net, torch.rand(3, 2, 2, 16, 16), mode="event")
    layers = speck_layers(rep)
    assert [la.name for la in layers] == ["0.V", "0.U", "3.V", "3.U", "7.V", "7.U"]
    assert layers[4].kernel == (4, 4) and layers[4].c_in == 16  # the head reads the 4x4 map
    fit = speck_fit(layers)
    assert fit["fits"] and len(set(fit["assignment"].values())) == 6
    big = [SpeckLayer(f"l{i}", 64, 128, (3, 3), (64, 64)) for i in range(3)]
    res = speck_fit(big)  # 128·2^12 = 512 Ki neurons: more than any core's 64 Ki
    assert not res["fits"] and res["unplaced"] == ["l0", "l1", "l2"]
    ten = [SpeckLayer(f"l{i}", 2, 2, (1, 1), (4, 4)) for i in range(10)]
    assert speck_fit(ten)["unplaced"] == ["l9"]  # nine cores
