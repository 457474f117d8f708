"""Example 07 runs in --quick mode and writes its PNG and JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "07_bio_digits.py"


@pytest.mark.slow
def test_quick_run_writes_curves(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("bio_digits_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "curves.png"
    summary = module.main(["--quick", "--out", str(out)])
    assert out.stat().st_size > 1000
    saved = json.loads(out.with_suffix(".json").read_text())
    for name in ("plain", "bio"):
        assert len(saved[name]["curve_mean"]) == 3
        assert saved[name]["final_mean"] == summary[name]["final_mean"]
        assert summary[name]["final_mean"] > 0.5  # learns well above chance (0.1) in 3 epochs
