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


def _report_dict(rng, steps=5):
    """A braingate Report dict of a 12-24-4 event network (what Report.save writes)."""
    layers = {}
    for name, (n, m, r, b) in {"0": (12, 24, 4, 2), "2": (24, 4, 2, 1)}.items():
        ev = (rng.random(n) * steps).tolist()
        lat = (rng.random(r) * steps).tolist()
        layers[name] = {"synops": 1.0, "dense_synops": float(n * m), "lowrank_ops": 1.0,
                        "input_events": sum(ev), "latent_events": sum(lat), "gate_ops": 0.0,
                        "resync_ops": 0.0, "in_features": n, "out_features": m,
                        "kind": "event_linear", "rank": r, "blocks": b,
                        "input_unit_events": ev, "latent_unit_events": lat}  # fmt: skip
    return {"total": {}, "layers": layers, "trace": {}, "meta": {"steps": steps, "batch": 2,
                                                                 "mode": "event"}}  # fmt: skip


def test_help_shows_the_path_from_a_run_to_an_estimate(capsys):
    with pytest.raises(SystemExit):
        main(["map", "--help"])
    out = capsys.readouterr().out
    assert "Report.save" in out or "rep.save" in out
    assert "make demo" in out and "comparison.json" in out and "--dataset" in out


def test_map_reads_a_comparison_json_and_a_report_json(tmp_path, rng, capsys):
    rep = _report_dict(rng)
    comp = {"meta": {}, "results": {"digits": {"report": rep}, "motions": {"report": rep}}}
    (tmp_path / "comparison.json").write_text(json.dumps(comp))
    (tmp_path / "run.json").write_text(json.dumps(rep))
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="pick one with --dataset"):
        main(["map", str(tmp_path / "comparison.json"), "--out", str(out)])
    with pytest.raises(SystemExit, match="choose from"):
        main(["map", str(tmp_path / "comparison.json"), "--dataset", "x", "--out", str(out)])
    args = ["--chip", "generic", "--cores", "16", "--out", str(out), "--no-plots"]
    assert main(["map", str(tmp_path / "comparison.json"), "--dataset", "digits", *args]) == 0
    md = capsys.readouterr().out
    assert "digits on generic" in md and "pJ/step" in md and "J / sample (T=5)" in md
    assert main(["map", str(tmp_path / "run.json"), *args]) == 0
    energy = json.loads((out / "energy.json").read_text())["traffic"]
    assert energy["units"]["energy"] == "J per step"
    assert energy["per_sample_j"]["total"] == pytest.approx(5 * energy["total_j"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--chip", "generic", "--cores", "1000000000"], "cores=1,000,000,000 exceeds"),
        (["--chips", "0"], "chips=0 must be a positive int"),
        (["--chips", "-3"], "chips=-3 must be a positive int"),
        (["--chip", "loihi", "--chips", "100000"], "exceeds the 2,097,152 cores"),
        (["--chip", "loihi", "--cores", "64"], "--cores applies to --chip generic only"),
    ],
)
def test_board_flags_out_of_bounds_are_clear_errors(tmp_path, rng, capsys, flags, message):
    (tmp_path / "run.json").write_text(json.dumps(_report_dict(rng)))
    assert main(["map", str(tmp_path / "run.json"), *flags, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r["layers"]["0"].pop("input_unit_events"), "lacks \\['input_unit_events'\\]"),
        (lambda r: r["layers"]["2"].pop("latent_unit_events"), "lacks \\['latent_unit_events'\\]"),
        (lambda r: r["layers"]["0"].pop("rank"), "lacks \\['rank'\\]"),
        (lambda r: r["meta"].pop("steps"), "steps=None"),
        (lambda r: r["layers"]["0"]["input_unit_events"].__setitem__(0, -1.0), "finite and >= 0"),
        (lambda r: r["layers"]["0"].update(in_features=0), "in_features=0 must be >= 1"),
        (lambda r: r["layers"]["0"].update(blocks=3), "blocks=3"),
    ],
)
def test_reports_lacking_trace_fields_are_refused(tmp_path, rng, edit, message):
    rep = _report_dict(rng)
    edit(rep)
    (tmp_path / "run.json").write_text(json.dumps(rep))
    with pytest.raises(SystemExit, match=message):
        main(["map", str(tmp_path / "run.json"), "--out", str(tmp_path)])


def test_dense_layers_of_a_report_are_listed_not_mapped(rng):
    from hwmaps.extract import from_report

    rep = _report_dict(rng)
    rep["layers"]["9"] = {"kind": "linear", "in_features": 4, "out_features": 2, "rank": 2,
                          "input_unit_events": [1.0] * 4, "latent_unit_events": []}  # fmt: skip
    net = from_report(rep)
    assert net.meta["dense"] == ["9"] and {b.layer for b in net.blocks} == {"0", "2"}
