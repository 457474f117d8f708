"""hwmaps extraction of recurrent event layers (hwmaps/extract_rnn.py)."""

import pytest
import torch
from torch import nn

import braingate as bg
import hwmaps
import hwmaps.extract_rnn  # registers the recurrent extractor
from braingate.nn.event_rnn import EventGRU, EventLSTMCell
from hwmaps.extract import from_report


@pytest.fixture
def run():
    torch.manual_seed(0)
    model = nn.Sequential(
        EventGRU(5, 8, (4, 6), num_layers=2, blocks=2, threshold=0.1, hidden_threshold=0.05,
                 latent_threshold=0.05, return_state=False),
        bg.EventLinear(8, 3, 2, threshold=0.05),
    )  # fmt: skip
    xs = (0.3 * torch.randn(12, 2, 5)).cumsum(0)
    _, report = bg.simulate(model, xs, mode="event")
    return model, report


def test_recurrent_blocks_self_traffic_and_synops(run):
    model, report = run
    net = hwmaps.extract(model, report, name="rnn")
    names = [b.name for b in net.blocks]
    assert names[:8] == ["0.l0.ih.V0", "0.l0.ih.V1", "0.l0.hh.V0", "0.l0.hh.V1",
                         "0.l0.Ur", "0.l0.Uz", "0.l0.Un", "0.l1.ih.V0"]  # fmt: skip
    hv, uz = net.block("0.l0.hh.V0"), net.block("0.l0.Uz")
    assert hv.source == uz.dest == "0.h0.rec"  # the hidden factor reads the layer's own units
    assert net.block("0.l0.Un").dest == "0.h0"
    assert net.block("0.l1.ih.V0").source == "0.h0"  # layer 1 reads layer 0's hidden units
    assert net.block("1.V0").source == "0.h1"  # the head reads the last layer
    assert net.block("0.l0.hh.V1").dest_start == 4 + 3  # after the input factor's rank 4
    traffic = net.traffic()
    assert any(src.startswith("0.l0.U") and dst.startswith("0.l0.hh.V") for src, dst in traffic)
    assert any(src == "0.l0.Un" and dst.startswith("0.l1.ih.V") for src, dst in traffic)
    # synapses: per layer G·H·(R_x + R_h) in the gate blocks and n·R in the V blocks
    G, H = 3, 8
    rnn = G * H * (4 + 6) + 5 * 4 + H * 6 + G * H * (4 + 6) + H * 4 + H * 6
    assert net.synapses == rnn + (8 + 3) * 2
    # synops per step (events × rows) equal the report's synops of the recurrent layer
    steps = report.meta["steps"]
    syn = sum(sum(b.source_events) * b.rows for b in net.blocks if b.layer == "0")
    assert syn * steps == pytest.approx(report.layers["0"]["synops"])


def test_from_report_and_mapping(run):
    model, report = run
    net = hwmaps.extract(model, report, name="rnn")
    assert from_report(report.to_dict(), "rnn") == net
    placement = hwmaps.map_network(net, hwmaps.chips.get("loihi"), method="traffic", seed=0)
    energy = hwmaps.estimate(placement)
    assert energy.total_j > 0


def test_cell_and_bad_report():
    torch.manual_seed(1)
    cell = EventLSTMCell(3, 4, 2, threshold=0.01, return_state=False)
    xs = torch.randn(5, 1, 3)
    _, report = bg.simulate(nn.Sequential(cell), xs, mode="event")
    net = hwmaps.extract(nn.Sequential(cell), report)
    assert [b.name for b in net.blocks][-4:] == ["0.l0.Ui", "0.l0.Uf", "0.l0.Ug", "0.l0.Uo"]
    bad = report.to_dict()
    bad["layers"]["0"]["factors"] = bad["layers"]["0"]["factors"][:1]
    with pytest.raises(ValueError, match="do not describe a 1-layer GRU / LSTM"):
        from_report(bad)
