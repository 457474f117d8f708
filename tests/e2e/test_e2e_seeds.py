"""benchmarks/e2e_seeds.py in quick mode: one row per seed and dataset, a summary that matches."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_e2e_seeds_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "_bench_e2e_seeds", ROOT / "benchmarks/e2e_seeds.py"
    )
    mod = importlib.util.module_from_spec(spec)
    threads, path = torch.get_num_threads(), list(sys.path)
    try:
        spec.loader.exec_module(mod)
        out = tmp_path / "seeds.json"
        mod.main(["--quick", "--seeds", "0", "1", "--datasets", "digits", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
        sys.path[:] = path
    data = json.loads(out.read_text())
    assert [(r["dataset"], r["seed"]) for r in data["rows"]] == [("digits", 0), ("digits", 1)]
    for r in data["rows"]:
        assert 0 <= r["acc_event"] <= 100 and r["synops_ratio"] > 1 and r["speedup_step"] > 0
        assert r["acc_drop"] == pytest.approx(r["acc_dense"] - r["acc_event"])
    stats = {s["seed"]: s for s in data["summary"]}
    assert set(stats) == {"mean", "min", "max"}
    for key in ("acc_event", "synops_ratio", "speedup_step"):
        vals = [r[key] for r in data["rows"]]
        assert stats["min"][key] == min(vals) and stats["max"][key] == max(vals)
        assert stats["mean"][key] == pytest.approx(sum(vals) / len(vals))
    assert "wrote" in capsys.readouterr().out
