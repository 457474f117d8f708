"""extract / from_report: braingate model + Report -> Network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import braingate as bg
import hwmaps
from braingate.nn.event_linear import EventLinear
from hwmaps.extract import from_report


@pytest.fixture
def run(rng):
    model = nn.Sequential(
        EventLinear(8, 16, 4, blocks=2, threshold=0.1, latent_threshold=0.1),
        nn.ReLU(),
        EventLinear(16, 3, 2, threshold=0.05),
    )
    xs = torch.from_numpy(rng.standard_normal((6, 2, 8)).astype("float32")).cumsum(0)
    _, report = bg.simulate(model, xs, mode="event")
    return model, report


def test_blocks_and_traffic(run):
    model, report = run
    net = hwmaps.extract(model, report, name="toy")
    assert [b.name for b in net.blocks] == ["0.V0", "0.V1", "0.U", "2.V0", "2.U"]
    v0, u0, v2 = net.block("0.V0"), net.block("0.U"), net.block("2.V0")
    assert (v0.rows, v0.cols, v0.dest_start) == (2, 8, 0)
    assert net.block("0.V1").dest_start == 2
    assert (u0.rows, u0.cols) == (16, 4)
    assert v2.source == u0.dest  # outputs of layer 0 feed layer 2's V block
    steps = report.meta["steps"]
    assert sum(v0.source_events) * steps == pytest.approx(report.layers["0"]["input_events"])
    assert sum(u0.source_events) * steps == pytest.approx(report.layers["0"]["latent_events"])
    assert sum(v2.source_events) * steps == pytest.approx(report.layers["2"]["input_events"])
    # the model's synapses are all there: (n + m) * R per layer
    assert net.synapses == (8 + 16) * 4 + (16 + 3) * 2


def test_from_report_matches_extract(run, tmp_path):
    model, report = run
    assert from_report(report.to_dict(), "toy") == hwmaps.extract(model, report, name="toy")


def test_errors(run):
    model, report = run
    with pytest.raises(TypeError, match="nn.Module"):
        hwmaps.extract("model", report)
    with pytest.raises(ValueError, match="no event layer"):
        hwmaps.extract(nn.Linear(2, 2), report)
    with pytest.raises(ValueError, match="lacks 'layers'"):
        from_report({"total": {}})
