"""CLI: chips table, map and compare write their files; bad input exits with a message."""

from __future__ import annotations

import json

import pytest

from hwmaps.__main__ import main

from ._nets import mlp


def test_chips_lists_sources(capsys):
    assert main(["chips", "--sources"]) == 0
    out = capsys.readouterr().out
    assert "truenorth" in out and "Davies" in out and "assumption" in out


def test_map_and_compare(tmp_path, rng, capsys):
    net = mlp([16, 64, 8], 8, 2, rng)
    net.save(tmp_path / "net.json")
    out = tmp_path / "out"
    assert main(["map", str(tmp_path / "net.json"), "--chip", "generic", "--cores", "64",
                 "--out", str(out), "--no-plots"]) == 0  # fmt: skip
    assert (out / "placement_traffic.json").exists() and (out / "report.md").exists()
    assert main(["compare", str(tmp_path / "net.json"), "--chip", "truenorth", "--quiet",
                 "--out", str(out)]) == 0  # fmt: skip
    energy = json.loads((out / "energy.json").read_text())
    assert set(energy) == {"sequential", "first_fit", "metis_anneal", "traffic"}
    assert (out / "energy_breakdown.png").stat().st_size > 1000
    assert "| traffic |" in capsys.readouterr().out


def test_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(SystemExit, match="neither a Network"):
        main(["map", str(bad)])
    bad.write_text("{oops")
    with pytest.raises(SystemExit, match="cannot read"):
        main(["map", str(bad)])
