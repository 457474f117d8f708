"""Quick run of benchmarks/adaptive_rank_accuracy.py on real data (digits)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _load():
    saved_path, saved = list(sys.path), sys.modules.pop("_common", None)
    try:
        spec = importlib.util.spec_from_file_location(
            "_bench_adaptive_rank", ROOT / "benchmarks/adaptive_rank_accuracy.py"
        )
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
    finally:
        sys.path[:] = saved_path
        sys.modules.pop("_common", None)
        if saved is not None:
            sys.modules["_common"] = saved
    return mod


@pytest.mark.slow
def test_adaptive_rank_accuracy_quick(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        payload = _load().main(["--quick", "--out", str(tmp_path / "ara.json")])
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp_path / "ara.json").read_text()) == json.loads(json.dumps(payload))
    (res,) = payload["results"]
    rows = {r["model"]: r for r in res["rows"]}
    assert list(rows) == ["nn.Linear"] + [f"LoRAven {m}" for m in payload["targets_pts"]]
    lin = rows.pop("nn.Linear")
    assert lin["acc"] > 0.3 and lin["energy_mJ"] > 0  # 3 epochs: above chance (0.1)
    for name, r in rows.items():
        assert r["acc"] > 0.3, name
        assert r["gap_pts"] == pytest.approx(100 * (lin["acc"] - r["acc"]), abs=1e-6)
        assert r["pass_acc"] == (r["gap_pts"] <= r["target_pts"])
        assert r["within_seed"] == (r["energy_mJ"] <= r["seed_mJ"] * (1 + 1e-9))
        assert 0 < r["energy_mJ"] <= r["cap_mJ"] * (1 + 1e-9)  # per-sample budgets hold
        for (lo, hi), mean in zip(r["rank_ranges"], r["mean_ranks"]):
            assert lo <= mean <= hi
    # modes order by energy: more rank, more energy
    e = [rows[f"LoRAven {m}"]["energy_mJ"] for m in ("high_performance", "balanced", "low_power")]
    assert e[0] > e[1] > e[2]
    (adl,) = payload["adlrns"]
    assert adl["linear_acc"] > 0.2 and [r["alpha"] for r in adl["dynamic"]] == [1.0, 0.1]
    for r in adl["dynamic"]:
        assert r["acc"] > 0.2 and r["energy_mJ"] > 0 and 4 <= r["rank"] <= 64
        assert r["vs_linear"] == pytest.approx(r["energy_mJ"] / adl["linear_mJ"])
        (floor,) = r["floors"]  # one seed: the floor the trainer calibrated, or None
        assert floor is None or 4 <= floor <= r["rank"] + 1e-9
    out = capsys.readouterr().out
    assert "LoRAven balanced" in out and "ADLRNS quick start" in out
