"""Sweep helper: Pareto front invariants, serial sweep on a real stream, Ray Tune local sweep."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from braingate.integrations.tune import CompressionEvaluator, grid, pareto_front, sweep

points = st.lists(
    st.tuples(st.integers(0, 20), st.integers(0, 20)).map(
        lambda p: {"energy_J_per_sample": float(p[0]), "accuracy": float(p[1])}
    ),
    min_size=1,
    max_size=30,
)


def _dominates(q: dict, p: dict) -> bool:
    better_or_equal = (
        q["energy_J_per_sample"] <= p["energy_J_per_sample"] and q["accuracy"] >= p["accuracy"]
    )
    return better_or_equal and (q["energy_J_per_sample"], q["accuracy"]) != (
        p["energy_J_per_sample"],
        p["accuracy"],
    )


@given(points)
@settings(max_examples=60, deadline=None)
def test_pareto_front_is_exactly_the_non_dominated_set(trials):
    front = pareto_front(trials)
    for p in front:
        assert not any(_dominates(q, p) for q in trials)
    for p in trials:
        on_front = any(
            q["energy_J_per_sample"] == p["energy_J_per_sample"] and q["accuracy"] == p["accuracy"]
            for q in front
        )
        assert on_front or any(_dominates(q, p) for q in front)
    assert [p["energy_J_per_sample"] for p in front] == sorted(
        p["energy_J_per_sample"] for p in front
    )


@pytest.fixture(scope="module")
def task():
    """A per-step classifier trained briefly on BasicMotions, and 16 test streams."""
    aeon = pytest.importorskip("aeon.datasets")
    Xtr, ytr = aeon.load_classification("BasicMotions", split="train")
    Xte, yte = aeon.load_classification("BasicMotions", split="test")
    classes = np.unique(ytr)

    def prep(X, y):
        x = torch.tensor(X, dtype=torch.float32).permute(2, 0, 1)  # (T, N, 6)
        return x / 10.0, torch.as_tensor(np.searchsorted(classes, y))

    xs, ys = prep(Xtr, ytr)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 4))
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xs).mean(0), ys).backward()
        opt.step()
    xt, yt = prep(Xte[::2][:16], yte[::2][:16])
    return model, xt, yt


def test_serial_sweep_writes_pareto_json(task, tmp_path):
    model, xs, ys = task
    evaluate = CompressionEvaluator(model, xs, ys)
    space = {"rank": [2, 4], "blocks": [1, 2], "threshold": [0.0, 0.05]}
    res = sweep(evaluate, space, tmp_path, backend="serial")
    saved = json.loads((tmp_path / "pareto.json").read_text())
    assert len(saved["trials"]) == 8 and saved["pareto"] == res["pareto"]
    assert (tmp_path / "pareto.png").stat().st_size > 0
    by = {(t["rank"], t["blocks"], t["threshold"]): t for t in res["trials"]}
    assert by[(4, 1, 0.05)]["synops"] < by[(4, 1, 0.0)]["synops"]  # thresholds skip work
    assert max(t["accuracy"] for t in res["trials"]) >= 0.5  # 4 classes: chance is 0.25
    assert all(t["energy_J_per_sample"] > 0 for t in res["trials"])


def test_grid_and_errors(task):
    assert grid({"a": [1, 2], "b": 3}) == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    with pytest.raises(ValueError, match="non-empty"):
        grid({})
    with pytest.raises(ValueError, match="backend='dask'"):
        sweep(lambda c: c, {"a": [1]}, "unused", backend="dask")
    with pytest.raises(ValueError, match="lacks"):
        pareto_front([{"accuracy": 1.0}])


@pytest.mark.slow
def test_ray_tune_local_sweep(task, tmp_path):
    """A real Ray Tune sweep (4 trials on a local Ray instance; `make test` installs the `tune`
    extra, so this runs in CI): trials match serial evaluation, the front is non-dominated."""
    import ray  # noqa: F401  (installed by `make test`; a missing Ray is a failure, not a skip)

    model, xs, ys = task
    evaluate = CompressionEvaluator(model, xs[:, :8], ys[:8])
    space = {"rank": [2, 4], "blocks": [2], "threshold": [0.0, 0.1]}
    res = sweep(evaluate, space, tmp_path, backend="ray", plot=False)
    assert res["backend"] == "ray" and len(res["trials"]) == 4
    keys = {(t["rank"], t["blocks"], t["threshold"]) for t in res["trials"]}
    assert keys == {(r, 2, th) for r in (2, 4) for th in (0.0, 0.1)}
    for t in res["trials"]:  # each Ray trial computed what a serial call computes
        serial = evaluate({k: t[k] for k in space})
        assert t["synops"] == pytest.approx(serial["synops"])
        assert t["energy_J_per_sample"] == pytest.approx(serial["energy_J_per_sample"])
    front = res["pareto"]
    assert front and all(p in res["trials"] for p in front)
    for p in front:
        assert not any(_dominates(q, p) for q in res["trials"])
    assert json.loads((tmp_path / "pareto.json").read_text())["pareto"] == front
