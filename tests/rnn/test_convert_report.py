"""bg.convert reports what it did to recurrent layers: per-factor ranks and their adjustments."""

from __future__ import annotations

import warnings

from torch import nn

import braingate as bg


def test_gru_conversion_report_carries_the_per_factor_ranks_and_adjustments():
    net = nn.Sequential(nn.GRU(6, 32, num_layers=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg.convert(net, rank=0.5)
    rep = net.conversion_report["0"]
    assert rep["ranks"] == [list(r) for r in net[0].ranks] == [[6, 16], [16, 16]]
    assert any("input factor" in a and "capped" in a for a in rep["adjusted"])
