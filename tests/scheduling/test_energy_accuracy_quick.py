"""Quick runs of benchmarks/energy_accuracy.py and examples/04_loraven_classifier.py (real data)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _load(rel: str, name: str):
    """Load a script as a module; the helper module it imports by bare name (``_common``:
    benchmarks/ and examples/ each have one) and its sys.path entry do not leak out."""
    saved_path, saved = list(sys.path), sys.modules.pop("_common", None)
    try:
        spec = importlib.util.spec_from_file_location(name, ROOT / rel)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("_common", None)
        if saved is not None:
            sys.modules["_common"] = saved
    return mod


@pytest.fixture(autouse=True)
def _keep_threads():
    """The scripts pin torch to one thread; give the rest of the session its setting back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_energy_accuracy_quick(tmp_path, capsys):
    bench = _load("benchmarks/energy_accuracy.py", "_bench_energy_accuracy")
    out = tmp_path / "ea.json"
    bench.main(["--quick", "--out", str(out)])
    payload = json.loads(out.read_text())
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert [r["dataset"] for r in payload["results"]] == ["digits", "BasicMotions"]
    for res, chance in zip(payload["results"], (0.1, 0.25)):
        rows = res["rows"]
        dense = [r for r in rows if r["method"] == "dense"]
        static = {r["rank"]: r for r in rows if r["method"] == "static"}
        adaptive = [r for r in rows if r["method"] == "adaptive"]
        assert len(dense) == 1 and len(static) == 3 and len(adaptive) == 2
        energies = [static[k]["energy_mJ"] for k in sorted(static)]
        assert energies == sorted(energies) and dense[0]["energy_mJ"] > energies[-1]
        assert all(r["acc"] > 2 * chance for r in rows)
        for r in adaptive:
            matched = static[r["matched_static_rank"]]
            # the budget scheduler never overspends the matched static energy
            assert r["energy_mJ"] <= matched["energy_mJ"] * (1 + 1e-9)
            assert r["rank_std_within_batch"] > 0  # per-sample ranks differ
            assert r["dominates"] == (r["acc"] >= matched["acc"])
            # the single-rank control: the same nested model, every sample at the matched rank
            assert r["nested_fixed_acc"] > 2 * chance
        assert res["dominated_points"] == sum(r["dominates"] for r in adaptive)
    assert "budget points dominate" in capsys.readouterr().out


@pytest.mark.slow
def test_loraven_example_quick():
    example = _load("examples/04_loraven_classifier.py", "_example_04_loraven")
    summary = example.main(["--quick"])
    assert list(summary) == ["high_performance", "balanced", "low_power"]
    assert summary["high_performance"]["accuracy"] > 0.5
    for mode, res in summary.items():
        assert res["accuracy"] > 0.2, mode
        for stats in res["layers"]:
            assert stats["mode"] == mode
            assert 0 < stats["budget_usage"] <= 1 + 1e-9  # the budget is a per-sample cap
            assert stats["energy_consumption"] <= stats["energy_budget"] * (1 + 1e-9)
            assert 0 < stats["compression_ratio"] and stats["latency_ms"] > 0
