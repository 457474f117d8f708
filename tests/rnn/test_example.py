"""Example 11 (delta GRU on BasicMotions) runs in --quick mode."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "11_event_gru.py"


@pytest.mark.slow
def test_quick_run(tmp_path, monkeypatch):
    pytest.importorskip("aeon")
    monkeypatch.chdir(tmp_path)  # writes into results/11_event_gru/quick/ here
    monkeypatch.syspath_prepend(str(EXAMPLE.parent))  # the examples' shared _outputs
    spec = importlib.util.spec_from_file_location("event_gru_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--quick"])
    written = tmp_path / "results" / "11_event_gru" / "quick"
    assert sorted(p.name for p in written.iterdir()) == ["report.json", "summary.json"]
    assert out["acc_torch"] > 0.5 and out["acc_event"] >= out["acc_dense"] - 0.1
    assert out["ratio"] > 1.5  # the calibrated event network skips work
    assert out["us_event"] > 0 and out["energy_j_per_sample"] > 0
