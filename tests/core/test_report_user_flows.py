"""Report as a user reads it: summary of nested CNNs (long names, layers left dense) and a
save that never leaves half a file."""

import os
import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

import braingate as bg


def _report():
    torch.manual_seed(0)
    features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(4, 4, 3, padding=1, groups=4))  # fmt: skip
    net = nn.Sequential(
        OrderedDict(
            a_rather_long_feature_extractor=features,
            flat=nn.Flatten(),
            head=nn.Linear(4 * 6 * 6, 3),
        )
    ).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bg.convert(net, rank=1.0)
    return bg.simulate(net, torch.rand(3, 2, 1, 6, 6), mode="event")[1]


def test_summary_aligns_long_names_and_marks_layers_left_dense():
    text = _report().summary()
    lines = text.splitlines()
    table = [ln for ln in lines[:-2] if not ln.startswith("-")]
    widths = {len(ln) for ln in table}
    assert len(widths) == 1, text  # every row as wide as the header
    dense = [ln for ln in lines if ln.startswith("a_rather_long_feature_extractor.2 *")]
    assert dense, text  # the grouped conv stayed dense and is marked
    assert "left dense" in lines[-1]


def test_save_is_atomic(tmp_path, monkeypatch):
    rep = _report()
    path = tmp_path / "run.json"
    rep.save(path)
    before = path.read_bytes()
    rep.meta["mode"] = "changed"

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        rep.save(path)
    assert path.read_bytes() == before  # the old report, whole
    assert os.listdir(tmp_path) == ["run.json"]  # no temporary file left behind
    assert bg.Report.load(path).meta["mode"] == "event"
