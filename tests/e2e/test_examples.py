"""Every example in quick mode: it runs, writes only into results/<example>/quick/ (never over the
full run's results), and what it reports is sane (finite ratios, accuracy above chance)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".py", ""), EXAMPLES / name)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(EXAMPLES))
    return mod


def run_quick(script: str, tmp_path: Path, monkeypatch, *extra: str):
    """Run ``script --quick`` from ``tmp_path``; returns (result, its output folder) after
    checking that every file it wrote lies in ``results/<example>/quick/``."""
    import torch

    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()  # the examples pin one thread; give the suite its own back
    try:
        res = _load(script).main(["--quick", *extra])
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "results" / script.removesuffix(".py") / "quick"
    written = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert written, f"{script} wrote nothing"
    stray = [p for p in written if out not in p.parents]
    assert not stray, f"{script} wrote outside {out}: {stray}"
    assert not list(out.parent.glob("*.json")), "quick run wrote into the full run's folder"
    return res, out


def _json(path: Path) -> dict:
    return json.loads(path.read_text())  # valid JSON: no NaN / Infinity


def test_01_quickstart(tmp_path, monkeypatch):
    res, out = run_quick("01_quickstart.py", tmp_path, monkeypatch)
    assert 1.0 < res["ratio"] < res["gated_ratio"] < math.inf
    assert res["max_error"] < 1.0
    assert _json(out / "report.json")["meta"]["mode"] == "event"


@pytest.mark.slow
def test_02_compare_and_the_hwmaps_path_to_a_chip_estimate(tmp_path, monkeypatch, capsys):
    import matplotlib.image as mpimg

    from hwmaps.__main__ import main as hwmaps_main

    doc, out = run_quick("02_compare_event_vs_dense.py", tmp_path, monkeypatch)
    data = _json(out / "comparison.json")
    assert set(data["results"]) == {"BasicMotions", "digits"} == set(doc["results"])
    chance = {"BasicMotions": 0.25, "digits": 0.1}
    for name, r in data["results"].items():
        rows = r["rows"]
        assert set(rows) >= {"dense full-rank", "dense low-rank", "event-driven (fine-tuned)"}
        assert rows["dense full-rank"]["ratio"] == pytest.approx(1.0)
        for row, v in rows.items():
            assert v["accuracy"] > 2 * chance[name], (name, row, v["accuracy"])
            assert v["ratio"] is not None and 1.0 <= v["ratio"] < 1e4, (name, row, v["ratio"])
        assert rows["event-driven (fine-tuned)"]["ops"] < rows["dense full-rank"]["ops"]
        assert all(0 < v < 1 for v in r["wall_s_per_step"].values())
        e = r["energy"]
        assert e["unit"].startswith("J per sample") and e["steps"] == r["steps"]
        assert set(e["devices"]) == {"cpu", "gpu"} and set(e["chips"]) == {"loihi", "truenorth"}
        for chip in e["chips"].values():
            ev = chip["event"]
            assert 0 < ev["dynamic_J_per_sample"] < ev["static_J_per_sample"] < 1.0
            # hwmaps' placed estimate is at least braingate's placement-free floor
            assert ev["dynamic_J_per_sample"] >= chip["braingate_J_per_sample"]["dynamic"] * 0.999
    md = (out / "comparison.md").read_text()
    assert md.startswith("# Event-driven vs dense") and "J per sample" in md
    for png in ("accuracy_vs_synops.png", "events_per_layer.png", "energy_breakdown.png"):
        img = mpimg.imread(out / png)
        assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300
    # the path from a `make demo` run to a chip estimate: the CLI reads what the demo wrote
    hw = tmp_path / "hw"
    args = ["--chip", "loihi", "--out", str(hw), "--no-plots"]
    assert hwmaps_main(["map", str(out / "comparison.json"), "--dataset", "digits", *args]) == 0
    assert "digits on loihi" in capsys.readouterr().out
    assert hwmaps_main(["map", str(out / "report_BasicMotions.json"), *args]) == 0
    energy = _json(hw / "energy.json")["traffic"]
    placed = data["results"]["BasicMotions"]["energy"]["chips"]["loihi"]["event"]
    assert energy["per_sample_j"]["dynamic"] == pytest.approx(placed["dynamic_J_per_sample"])


def test_03_map_to_chip(tmp_path, monkeypatch):
    res, out = run_quick("03_map_to_chip.py", tmp_path, monkeypatch)
    assert res["accuracy"] > 0.5 and 1.0 < res["ratio"] < math.inf
    noc = res["noc_pj_per_step"]
    assert set(noc) == {"sequential", "first_fit", "metis_anneal", "traffic"}
    assert all(math.isfinite(v) and v >= 0 for v in noc.values())
    assert noc["traffic"] <= noc["sequential"]
    for name in ("energy.json", "report.md", "run_report.json", "network.json",
                 "links_traffic.png", "utilisation_traffic.png", "energy_breakdown.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name


def test_04_loraven_classifier(tmp_path, monkeypatch):
    res, out = run_quick("04_loraven_classifier.py", tmp_path, monkeypatch)
    assert set(res) == {"high_performance", "balanced", "low_power"}
    assert all(v["accuracy"] > 0.2 for v in res.values())  # 10 classes: chance is 0.1
    assert _json(out / "summary.json")["quick"] is True


def test_05_spiking_snntorch(tmp_path, monkeypatch):
    res, out = run_quick("05_spiking_snntorch.py", tmp_path, monkeypatch)
    assert res["dense_accuracy"] > 0.25 and res["event_accuracy"] > 0.25  # 4 classes
    assert 1.0 < res["ratio"] < math.inf
    assert _json(out / "report.json")["meta"]["mode"] == "event"


def test_06_lora_finetune(tmp_path, monkeypatch):
    res, out = run_quick("06_lora_finetune.py", tmp_path, monkeypatch)
    assert res["full"]["acc"] > 0.4 and res["lora"]["acc"] > 0.4  # 5 classes: chance 0.2
    assert res["lora"]["reload_identical"]
    assert res["lora"]["trainable"] < res["full"]["trainable"]
    assert (out / "adapter" / "adapter_config.json").exists()


def test_07_bio_digits(tmp_path, monkeypatch):
    res, out = run_quick("07_bio_digits.py", tmp_path, monkeypatch)
    assert all(v["final_mean"] > 0.3 for v in res.values())  # 10 classes: chance 0.1
    assert (out / "accuracy.png").stat().st_size > 1000


def test_08_neurobench(tmp_path, monkeypatch):
    pytest.importorskip("neurobench")
    rows, out = run_quick("08_neurobench.py", tmp_path, monkeypatch)
    ev = rows["event, view=event"]
    assert ev["neurobench_synops"] == pytest.approx(ev["braingate_synops"])
    assert all(r["accuracy"] > 0.25 for r in rows.values())
    assert _json(out / "summary.json")["synops_gap"] < 1e-9


def test_09_tune_sweep(tmp_path, monkeypatch):
    # the example's Ray path is the same sweep() that tests/integrations/test_tune.py runs on a
    # local Ray instance; here the trials run serially to keep the suite short
    res, out = run_quick("09_tune_sweep.py", tmp_path, monkeypatch, "--serial")
    trials = res["trials"]
    assert len(trials) == 8 and max(t["accuracy"] for t in trials) > 0.25
    assert all(0 < t["energy_J_per_sample"] < 1 for t in trials)
    assert _json(out / "pareto.json")["pareto"] and (out / "pareto.png").exists()
