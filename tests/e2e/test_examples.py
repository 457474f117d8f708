"""The examples run in quick mode; the comparison demo writes report, JSON and plots that parse."""

from __future__ import annotations

import importlib.util
import json
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


def test_quickstart_runs_and_bound_is_small():
    res = _load("01_quickstart.py").main(["--quick"])
    assert res["ratio"] > 1.0 and res["gated_ratio"] > res["ratio"]
    assert res["max_error"] < 1.0


@pytest.mark.slow
def test_spiking_example_runs():
    res = _load("05_spiking_snntorch.py").main(["--quick"])
    assert 0.0 <= res["event_accuracy"] <= 1.0
    assert res["ratio"] > 1.0


@pytest.mark.slow
def test_demo_quick_writes_artifacts_that_parse(tmp_path):
    import matplotlib.image as mpimg

    doc = _load("02_compare_event_vs_dense.py").main(["--quick", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "comparison.json").read_text())
    assert set(data["results"]) == {"BasicMotions", "digits"} == set(doc["results"])
    for name, r in data["results"].items():
        rows = r["rows"]
        assert set(rows) >= {"dense full-rank", "dense low-rank", "event-driven (fine-tuned)"}
        assert rows["dense full-rank"]["ratio"] == pytest.approx(1.0)
        assert rows["event-driven (fine-tuned)"]["ops"] < rows["dense full-rank"]["ops"], name
        assert all(0.0 <= v["accuracy"] <= 1.0 for v in rows.values())
        assert all(v > 0 for v in r["wall_s_per_step"].values())
        assert set(r["energy"]["devices_mJ"]) == {"cpu", "gpu"}
        assert set(r["energy"]["chips_J"]) == {"loihi", "truenorth"}
        assert r["report"]["meta"]["mode"] == "event"
    md = (tmp_path / "comparison.md").read_text()
    assert md.startswith("# Event-driven vs dense") and "| dense full-rank |" in md
    for png in ("accuracy_vs_synops.png", "events_per_layer.png", "energy_breakdown.png"):
        img = mpimg.imread(tmp_path / png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


@pytest.mark.slow
def test_map_to_chip_example_writes_its_report(tmp_path):
    import subprocess

    out = tmp_path / "map"
    subprocess.run([sys.executable, str(EXAMPLES / "03_map_to_chip.py"), "--out", str(out)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    assert any(out.iterdir())
    jsons = list(out.rglob("*.json"))
    assert jsons and all(json.loads(p.read_text()) for p in jsons)


@pytest.mark.slow
def test_neurobench_example_counts_match(tmp_path):
    pytest.importorskip("neurobench")
    rows = _load("08_neurobench.py").main(["--quick", "--out", str(tmp_path / "nb.json")])
    assert json.loads((tmp_path / "nb.json").read_text())
    assert rows


@pytest.mark.slow
def test_tune_sweep_example_serial_writes_a_pareto_front(tmp_path):
    res = _load("09_tune_sweep.py").main(["--quick", "--serial", "--out", str(tmp_path)])
    front = json.loads((tmp_path / "pareto.json").read_text())
    assert res and front
