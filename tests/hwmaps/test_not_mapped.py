"""Layers bg.convert left dense are not mapped; hwmaps' reports say they are outside the estimate
(they were silently left out)."""

from __future__ import annotations

import json
import warnings

import torch
from torch import nn

import braingate as bg
from hwmaps.__main__ import main


def test_layers_left_dense_are_listed_as_outside_the_chip_estimate(tmp_path, capsys):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise: left dense
        nn.Flatten(), nn.Linear(8 * 64, 10),
    ).eval()  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg.convert(net, rank=0.5)
    _, rep = bg.simulate(net, torch.rand(4, 2, 2, 8, 8), mode="event")
    rep.save(tmp_path / "run.json")
    out = tmp_path / "out"
    assert main(["map", str(tmp_path / "run.json"), "--chip", "loihi", "--out", str(out),
                 "--no-plots"]) == 0  # fmt: skip
    md = (out / "report.md").read_text()
    macs = rep.layers["2"]["dense_synops"]
    assert "**Not in this estimate:**" in md and f"2 ({macs:,.0f} MACs per sample)" in md
    energy = json.loads((out / "energy.json").read_text())
    assert energy["not_mapped"] == {"2": {"macs_per_sample": macs}}
    assert "Not in this estimate" in capsys.readouterr().out
